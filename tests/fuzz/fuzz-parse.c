/* libFuzzer target for the value parsers of parse.h. The input, as a C
 * string, goes to each of them, and each answer is held against what
 * parse.h and echod.conf(5) promise: the grammar of numbers, sizes and
 * booleans exactly, and for durations the shape of what is accepted and the
 * round trip through parse_format_duration. */
#include <errno.h>
#include <stdbool.h>
#include <strings.h>

#include "fuzz.h"
#include "parse.h"

#define USEC_PER_SEC UINT64_C(1000000)

/* The ranges echod asks for (ports, interface indexes, the [server] and
 * [limits] numbers) and the widest one. */
static const uint64_t uint_ranges[][2] = {
    {1, 65535}, {1, UINT32_MAX}, {1, 1000000}, {0, 1000000}, {0, UINT64_MAX},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The decimal digits at the start of a string, read independently of
 * parse.c. */
struct digits {
	size_t len;
	bool overflow; /* more than UINT64_MAX */
	uint64_t value;
};

static struct digits leading_digits(const char *s)
{
	struct digits d = {0};

	for (; s[d.len] >= '0' && s[d.len] <= '9'; d.len++) {
		if (__builtin_mul_overflow(d.value, 10, &d.value) ||
		    __builtin_add_overflow(d.value, (uint64_t)(s[d.len] - '0'), &d.value))
			d.overflow = true;
	}
	return d;
}

/* A string of digits alone, in [min, max], is the only thing accepted. A
 * digit run too long for 64 bits is out of range even when junk follows:
 * both answers describe such a string, so both are taken. */
static void check_uint(const char *s, uint64_t min, uint64_t max)
{
	struct digits d = leading_digits(s);
	uint64_t out = 0;
	int r = parse_uint(s, min, max, &out);

	if (d.len == 0) {
		FUZZ_CHECK(r == -EINVAL, "parse_uint(\"%s\") = %d, want -EINVAL", s, r);
	} else if (d.overflow) {
		FUZZ_CHECK(r == -ERANGE || (r == -EINVAL && s[d.len]),
			   "parse_uint(\"%s\") = %d, want -ERANGE", s, r);
	} else if (s[d.len]) {
		FUZZ_CHECK(r == -EINVAL, "parse_uint(\"%s\") = %d, want -EINVAL", s, r);
	} else if (d.value < min || d.value > max) {
		FUZZ_CHECK(r == -ERANGE, "parse_uint(\"%s\", %llu, %llu) = %d, want -ERANGE", s,
			   (unsigned long long)min, (unsigned long long)max, r);
	} else {
		FUZZ_CHECK(r == 0 && out == d.value, "parse_uint(\"%s\") = %d, %llu", s, r,
			   (unsigned long long)out);
	}
}

/* Digits, then K, M or G (powers of 1024), then an optional B. */
static const char size_units[] = "KMG";

static void check_size(const char *s)
{
	struct digits d = leading_digits(s);
	const char *p = s + d.len;
	uint64_t mult = 1, want, out = 0;
	int r = parse_size(s, &out);

	if (*p && strchr(size_units, *p)) {
		mult = UINT64_C(1) << (10 * (strchr(size_units, *p) - size_units + 1));
		p++;
	}
	if (*p == 'B')
		p++;
	if (d.len == 0 || (*p && !d.overflow)) {
		FUZZ_CHECK(r == -EINVAL, "parse_size(\"%s\") = %d, want -EINVAL", s, r);
	} else if (d.overflow || __builtin_mul_overflow(d.value, mult, &want)) {
		FUZZ_CHECK(r == -ERANGE || (r == -EINVAL && *p),
			   "parse_size(\"%s\") = %d, want -ERANGE", s, r);
	} else {
		FUZZ_CHECK(r == 0 && out == want, "parse_size(\"%s\") = %d, %llu, want %llu", s, r,
			   (unsigned long long)out, (unsigned long long)want);
	}
}

static void check_bool(const char *s)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	int want = -1; /* -1: refused, else the value */
	bool out = false;
	int r = parse_bool(s, &out);

	for (size_t i = 0; i < N_ELEMS(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0)
			want = 1;
		if (strcasecmp(s, no[i]) == 0)
			want = 0;
	}
	if (want < 0)
		FUZZ_CHECK(r == -EINVAL, "parse_bool(\"%s\") = %d, want -EINVAL", s, r);
	else
		FUZZ_CHECK(r == 0 && out == (want == 1), "parse_bool(\"%s\") = %d, %d", s, r, out);
}

/* Formats usec and reads it back; a short buffer must hold a truncated
 * prefix of the same text, terminated, and nothing past its end. */
static void check_format(uint64_t usec, size_t short_len)
{
	char full[128], *small = malloc(short_len);
	uint64_t back = 0;
	int r;

	if (!small)
		abort();
	parse_format_duration(usec, full, (int)sizeof(full));
	FUZZ_CHECK(strspn(full, "0123456789abcdefghijklmnopqrstuvwxyz ") == strlen(full) &&
		       full[0] && strlen(full) < 64,
		   "parse_format_duration(%llu) = \"%s\"", (unsigned long long)usec, full);
	r = parse_duration(full, &back);
	FUZZ_CHECK(r == 0 && back == usec,
		   "parse_duration(parse_format_duration(%llu) = \"%s\") = %d, %llu",
		   (unsigned long long)usec, full, r, (unsigned long long)back);
	parse_format_duration(usec, small, (int)short_len);
	FUZZ_CHECK(strlen(small) < short_len && strncmp(full, small, strlen(small)) == 0,
		   "parse_format_duration(%llu) in %zu bytes = \"%s\", in full \"%s\"",
		   (unsigned long long)usec, short_len, small, full);
	free(small);
}

/* What is accepted: numbers with lower-case units, blanks between and
 * around them, the sum in range; a number without a unit only on its own,
 * meaning seconds. */
static void check_duration(const char *s, size_t short_len)
{
	const char *p = s + strspn(s, " \t");
	struct digits d = leading_digits(p);
	bool bare = d.len > 0 && p[d.len + strspn(p + d.len, " \t")] == '\0';
	uint64_t usec = 0;
	size_t end;
	int r = parse_duration(s, &usec);

	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE, "parse_duration(\"%s\") = %d", s, r);
	if (bare && (d.overflow || d.value > UINT64_MAX / USEC_PER_SEC)) {
		FUZZ_CHECK(r == -ERANGE, "parse_duration(\"%s\") = %d, want -ERANGE", s, r);
		return;
	}
	if (bare) {
		FUZZ_CHECK(r == 0 && usec == d.value * USEC_PER_SEC,
			   "parse_duration(\"%s\") = %d, %llu", s, r, (unsigned long long)usec);
	}
	if (r != 0)
		return;
	FUZZ_CHECK(strspn(s, "0123456789abcdefghijklmnopqrstuvwxyz \t") == strlen(s),
		   "parse_duration accepted \"%s\", which has a character no duration has", s);
	end = strlen(s);
	while (end > 0 && (s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	FUZZ_CHECK(bare || (s[end - 1] >= 'a' && s[end - 1] <= 'z'),
		   "parse_duration accepted \"%s\", which ends in a number without a unit", s);
	check_format(usec, short_len);
}

/* An accepted rate is within its bounds, and formats to a text that reads
 * back to the same rate; a refused one leaves the outputs alone. */
static void check_rate(const char *s)
{
	unsigned count = 7, count2 = 0;
	uint64_t period = 7, period2 = 0;
	char buf[48];
	int r = parse_rate(s, &count, &period);

	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ERANGE, "parse_rate(\"%s\") = %d", s, r);
		FUZZ_CHECK(count == 7 && period == 7, "parse_rate(\"%s\") failed but wrote", s);
		return;
	}
	FUZZ_CHECK(count == 0 ? period == 0 : count <= PARSE_RATE_MAX && period >= 1000000,
		   "parse_rate(\"%s\") = %u per %llu us", s, count, (unsigned long long)period);
	parse_format_rate(count, period, buf, sizeof(buf));
	FUZZ_CHECK(parse_rate(buf, &count2, &period2) == 0 && count2 == count && period2 == period,
		   "rate \"%s\" formats as \"%s\", which reads back differently", s, buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstring(data, size);
	/* Varies with the input, so that every length gets tried. */
	size_t short_len = 1 + size % 48;
	uint64_t n;

	for (size_t i = 0; i < N_ELEMS(uint_ranges); i++)
		check_uint(s, uint_ranges[i][0], uint_ranges[i][1]);
	if (parse_uint(s, 0, UINT64_MAX, &n) == 0)
		check_format(n, short_len);
	check_size(s);
	check_bool(s);
	check_duration(s, short_len);
	check_rate(s);
	free(s);
	return 0;
}
