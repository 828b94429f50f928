#include <errno.h>
#include <stdint.h>

#include "check.h"
#include "parse.h"

#define SEC  UINT64_C(1000000)
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

static void check_duration(const char *s, uint64_t want)
{
	uint64_t got = 12345;

	CHECK_INT(parse_duration(s, &got), 0);
	if (got != want)
		fprintf(stderr, "parse_duration(\"%s\") = %" PRIu64 ", expected %" PRIu64 "\n", s,
			got, want);
	CHECK(got == want);
}

static void check_duration_err(const char *s, int err)
{
	uint64_t got = 12345;

	CHECK_INT(parse_duration(s, &got), err);
	CHECK(got == 12345);
}

static void test_uint(void)
{
	uint64_t v = 99;

	CHECK_INT(parse_uint("0", 0, 10, &v), 0);
	CHECK_INT(v, 0);
	CHECK_INT(parse_uint("42", 0, 100, &v), 0);
	CHECK_INT(v, 42);
	CHECK_INT(parse_uint("007", 0, 100, &v), 0);
	CHECK_INT(v, 7);
	CHECK_INT(parse_uint("1", 1, 1, &v), 0);
	CHECK_INT(parse_uint("18446744073709551615", 0, UINT64_MAX, &v), 0);
	CHECK(v == UINT64_MAX);

	v = 99;
	CHECK_INT(parse_uint("0", 1, 10, &v), -ERANGE);
	CHECK_INT(parse_uint("11", 1, 10, &v), -ERANGE);
	CHECK_INT(parse_uint("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	CHECK_INT(parse_uint("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
	CHECK_INT(parse_uint("", 0, 10, &v), -EINVAL);
	CHECK_INT(parse_uint("-1", 0, 10, &v), -EINVAL);
	CHECK_INT(parse_uint("+1", 0, 10, &v), -EINVAL);
	CHECK_INT(parse_uint(" 1", 0, 10, &v), -EINVAL);
	CHECK_INT(parse_uint("1 ", 0, 10, &v), -EINVAL);
	CHECK_INT(parse_uint("1a", 0, 10, &v), -EINVAL);
	CHECK_INT(parse_uint("0x1", 0, 10, &v), -EINVAL);
	CHECK_INT(v, 99);
}

static void test_bool(void)
{
	static const char *const yes[] = {"yes", "YES", "true", "True", "on", "ON", "1"};
	static const char *const no[] = {"no", "No", "false", "FALSE", "off", "Off", "0"};
	static const char *const junk[] = {"", "maybe", "yess", "y", "2", " yes", "yes "};
	bool b;

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		CHECK_INT(parse_bool(yes[i], &b), 0);
		CHECK(b);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		CHECK_INT(parse_bool(no[i], &b), 0);
		CHECK(!b);
	}
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		CHECK_INT(parse_bool(junk[i], &b), -EINVAL);
}

static void test_duration_units(void)
{
	check_duration("0", 0);
	check_duration("30", 30 * SEC);
	check_duration(" 30 ", 30 * SEC);
	check_duration("7us", 7);
	check_duration("7usec", 7);
	check_duration("500ms", 500000);
	check_duration("500msec", 500000);
	check_duration("30s", 30 * SEC);
	check_duration("30sec", 30 * SEC);
	check_duration("1second", SEC);
	check_duration("2seconds", 2 * SEC);
	check_duration("5m", 5 * MIN);
	check_duration("5min", 5 * MIN);
	check_duration("1minute", MIN);
	check_duration("5minutes", 5 * MIN);
	check_duration("1h", HOUR);
	check_duration("2hr", 2 * HOUR);
	check_duration("1hour", HOUR);
	check_duration("3hours", 3 * HOUR);
	check_duration("2d", 2 * DAY);
	check_duration("1day", DAY);
	check_duration("2days", 2 * DAY);
	check_duration("1w", 7 * DAY);
	check_duration("1week", 7 * DAY);
	check_duration("2weeks", 14 * DAY);
	check_duration("0s", 0);
	check_duration("1h 30min", HOUR + 30 * MIN);
	check_duration("1h30min", HOUR + 30 * MIN);
	check_duration("5 min", 5 * MIN);
	check_duration("1d 2h 3min 4s 5ms 6us", DAY + 2 * HOUR + 3 * MIN + 4 * SEC + 5006);
	check_duration("90s", 90 * SEC);
	check_duration("1min 1min", 2 * MIN);
}

static void test_duration_errors(void)
{
	check_duration_err("", -EINVAL);
	check_duration_err("   ", -EINVAL);
	check_duration_err("-5s", -EINVAL);
	check_duration_err("5x", -EINVAL);
	check_duration_err("s", -EINVAL);
	check_duration_err("min", -EINVAL);
	check_duration_err("1.5s", -EINVAL);
	check_duration_err("5M", -EINVAL);
	check_duration_err("5MIN", -EINVAL);
	check_duration_err("1h 30", -EINVAL);
	check_duration_err("1h -30min", -EINVAL);
	check_duration_err("5min,", -EINVAL);
	check_duration_err("0x10s", -EINVAL);

	check_duration("18446744073709551615us", UINT64_MAX);
	check_duration("213503982d 8h 1min 49s 551ms 615us", UINT64_MAX);
	check_duration_err("18446744073709551616us", -ERANGE);
	check_duration_err("213503982d 8h 1min 49s 551ms 616us", -ERANGE);
	check_duration_err("18446744073709551615s", -ERANGE);
	check_duration_err("18446744073709551615", -ERANGE);
	check_duration_err("30500000000000w", -ERANGE);
	check_duration_err("99999999999999999999999999h", -ERANGE);
}

static void test_format_duration(void)
{
	static const uint64_t samples[] = {
	    0,
	    1,
	    999,
	    1000,
	    500000,
	    SEC,
	    30 * SEC,
	    90 * SEC,
	    5 * MIN,
	    HOUR + 30 * MIN,
	    DAY,
	    14 * DAY,
	    DAY + 2 * HOUR + 3 * MIN + 4 * SEC + 5006,
	    UINT64_MAX,
	};
	char buf[64], small[8];
	uint64_t back;

	CHECK_STR(parse_format_duration(0, buf, sizeof(buf)), "0");
	CHECK_STR(parse_format_duration(5 * MIN, buf, sizeof(buf)), "5min");
	CHECK_STR(parse_format_duration(30 * SEC, buf, sizeof(buf)), "30s");
	CHECK_STR(parse_format_duration(500000, buf, sizeof(buf)), "500ms");
	CHECK_STR(parse_format_duration(HOUR + 30 * MIN, buf, sizeof(buf)), "1h 30min");
	CHECK_STR(parse_format_duration(7, buf, sizeof(buf)), "7us");
	CHECK_STR(parse_format_duration(14 * DAY, buf, sizeof(buf)), "14d");
	CHECK_STR(parse_format_duration(UINT64_MAX, buf, sizeof(buf)),
		  "213503982d 8h 1min 49s 551ms 615us");
	CHECK(parse_format_duration(SEC, buf, sizeof(buf)) == buf);

	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		back = 12345;
		CHECK_INT(
		    parse_duration(parse_format_duration(samples[i], buf, sizeof(buf)), &back), 0);
		CHECK(back == samples[i]);
	}

	/* Too small a buffer truncates instead of overflowing. */
	memset(small, 'x', sizeof(small));
	parse_format_duration(HOUR + 30 * MIN + SEC, small, 5);
	CHECK(strlen(small) == 4);
	CHECK(small[5] == 'x');
}

static void test_size(void)
{
	uint64_t v = 99;

	CHECK_INT(parse_size("0", &v), 0);
	CHECK_INT(v, 0);
	CHECK_INT(parse_size("512", &v), 0);
	CHECK_INT(v, 512);
	CHECK_INT(parse_size("512B", &v), 0);
	CHECK_INT(v, 512);
	CHECK_INT(parse_size("1K", &v), 0);
	CHECK_INT(v, 1024);
	CHECK_INT(parse_size("64KB", &v), 0);
	CHECK_INT(v, 64 * 1024);
	CHECK_INT(parse_size("2M", &v), 0);
	CHECK_INT(v, 2 * 1024 * 1024);
	CHECK_INT(parse_size("2MB", &v), 0);
	CHECK_INT(v, 2 * 1024 * 1024);
	CHECK_INT(parse_size("3G", &v), 0);
	CHECK(v == UINT64_C(3) << 30);
	CHECK_INT(parse_size("17179869183G", &v), 0);
	CHECK(v == UINT64_MAX - ((UINT64_C(1) << 30) - 1));
	CHECK_INT(parse_size("18446744073709551615", &v), 0);
	CHECK(v == UINT64_MAX);

	v = 99;
	CHECK_INT(parse_size("17179869184G", &v), -ERANGE);
	CHECK_INT(parse_size("18014398509481984K", &v), -ERANGE);
	CHECK_INT(parse_size("18446744073709551616", &v), -ERANGE);
	CHECK_INT(parse_size("", &v), -EINVAL);
	CHECK_INT(parse_size("K", &v), -EINVAL);
	CHECK_INT(parse_size("-1K", &v), -EINVAL);
	CHECK_INT(parse_size("1 K", &v), -EINVAL);
	CHECK_INT(parse_size("1KK", &v), -EINVAL);
	CHECK_INT(parse_size("1T", &v), -EINVAL);
	CHECK_INT(parse_size("1k", &v), -EINVAL);
	CHECK_INT(parse_size("1BB", &v), -EINVAL);
	CHECK_INT(parse_size("1.5M", &v), -EINVAL);
	CHECK_INT(v, 99);
}

static void test_rate(void)
{
	static const struct {
		const char *in;
		unsigned count;
		uint64_t period;
		const char *out;
	} ok[] = {
	    {"20/s", 20, 1000000, "20/s"},
	    {"20/sec", 20, 1000000, "20/s"},
	    {"1/second", 1, 1000000, "1/s"},
	    {"300/min", 300, 60000000, "300/min"},
	    {"300/m", 300, 60000000, "300/min"},
	    {"10/h", 10, 3600000000ull, "10/h"},
	    {"5/hour", 5, 3600000000ull, "5/h"},
	    {"2/d", 2, 86400000000ull, "2/d"},
	    {"1000000/s", 1000000, 1000000, "1000000/s"},
	    {"0", 0, 0, "0"},
	};
	static const struct {
		const char *in;
		int err;
	} bad[] = {
	    {"", -EINVAL},
	    {"20", -EINVAL},
	    {"20/", -EINVAL},
	    {"/s", -EINVAL},
	    {"20/ms", -EINVAL},
	    {"20/us", -EINVAL},
	    {"20 /s", -EINVAL},
	    {"20/ s", -EINVAL},
	    {"20/s ", -EINVAL},
	    {"-1/s", -EINVAL},
	    {"20/fortnight", -EINVAL},
	    {"1/w", -EINVAL},
	    {"1/weeks", -EINVAL},
	    {"0/s", -ERANGE},
	    {"1000001/s", -ERANGE},
	    {"99999999999999999999999/s", -ERANGE},
	    {"00", -EINVAL},
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		unsigned count = 99;
		uint64_t period = 99;

		CHECK_INT(parse_rate(ok[i].in, &count, &period), 0);
		CHECK_INT(count, ok[i].count);
		CHECK_INT(period, ok[i].period);
		CHECK_STR(parse_format_rate(count, period, buf, sizeof(buf)), ok[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned count = 99;
		uint64_t period = 99;

		CHECK_INT(parse_rate(bad[i].in, &count, &period), bad[i].err);
		CHECK_INT(count, 99); /* untouched on failure */
	}
}

int main(void)
{
	test_uint();
	test_bool();
	test_duration_units();
	test_duration_errors();
	test_format_duration();
	test_size();
	test_rate();
	return check_done();
}
