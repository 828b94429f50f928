#include "parse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)
#define USEC_PER_MIN  (60 * USEC_PER_SEC)
#define USEC_PER_HOUR (60 * USEC_PER_MIN)
#define USEC_PER_DAY  (24 * USEC_PER_HOUR)
#define USEC_PER_WEEK (7 * USEC_PER_DAY)

struct unit {
	const char *name;
	uint64_t usec;
};

/* The spellings systemd accepts, minus months and years, whose length
 * varies, and "M", which systemd reads as months and an admin might not. */
static const struct unit duration_units[] = {
    {"us", 1},
    {"usec", 1},
    {"ms", USEC_PER_MSEC},
    {"msec", USEC_PER_MSEC},
    {"s", USEC_PER_SEC},
    {"sec", USEC_PER_SEC},
    {"second", USEC_PER_SEC},
    {"seconds", USEC_PER_SEC},
    {"m", USEC_PER_MIN},
    {"min", USEC_PER_MIN},
    {"minute", USEC_PER_MIN},
    {"minutes", USEC_PER_MIN},
    {"h", USEC_PER_HOUR},
    {"hr", USEC_PER_HOUR},
    {"hour", USEC_PER_HOUR},
    {"hours", USEC_PER_HOUR},
    {"d", USEC_PER_DAY},
    {"day", USEC_PER_DAY},
    {"days", USEC_PER_DAY},
    {"w", USEC_PER_WEEK},
    {"week", USEC_PER_WEEK},
    {"weeks", USEC_PER_WEEK},
};

/* Largest first, so that formatting gives the shortest exact spelling. */
static const struct unit format_units[] = {
    {"d", USEC_PER_DAY}, {"h", USEC_PER_HOUR},	{"min", USEC_PER_MIN},
    {"s", USEC_PER_SEC}, {"ms", USEC_PER_MSEC}, {"us", 1},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Reads the decimal digits at *s and advances past them. strtoull is not
 * used because it accepts signs, leading blanks and "0x". */
static int parse_digits(const char **s, uint64_t *out)
{
	const char *p = *s;
	uint64_t n = 0;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -ERANGE;
		n = n * 10 + d;
	}
	*s = p;
	*out = n;
	return 0;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t n;
	int r = parse_digits(&s, &n);

	if (r < 0)
		return r;
	if (*s)
		return -EINVAL;
	if (n < min || n > max)
		return -ERANGE;
	*out = n;
	return 0;
}

int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < N_ELEMS(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int duration_unit(const char **s, uint64_t *usec)
{
	size_t len = 0;

	while (((*s)[len] >= 'a' && (*s)[len] <= 'z') || ((*s)[len] >= 'A' && (*s)[len] <= 'Z'))
		len++;
	for (size_t i = 0; i < N_ELEMS(duration_units); i++) {
		if (strlen(duration_units[i].name) == len &&
		    memcmp(duration_units[i].name, *s, len) == 0) {
			*usec = duration_units[i].usec;
			*s += len;
			return 0;
		}
	}
	return -EINVAL;
}

int parse_duration(const char *s, uint64_t *usec)
{
	const char *p = s + strspn(s, " \t");
	uint64_t total = 0, n, unit;
	int r;

	if (!*p)
		return -EINVAL;
	/* A bare number is seconds, but only on its own: in "1h 30" the 30
	 * is more likely a forgotten unit than seconds. */
	r = parse_digits(&p, &n);
	if (r < 0)
		return r;
	if (!p[strspn(p, " \t")]) {
		if (n > UINT64_MAX / USEC_PER_SEC)
			return -ERANGE;
		*usec = n * USEC_PER_SEC;
		return 0;
	}
	for (;;) {
		p += strspn(p, " \t");
		r = duration_unit(&p, &unit);
		if (r < 0)
			return r;
		if (n > UINT64_MAX / unit || total > UINT64_MAX - n * unit)
			return -ERANGE;
		total += n * unit;
		p += strspn(p, " \t");
		if (!*p)
			break;
		r = parse_digits(&p, &n);
		if (r < 0)
			return r;
	}
	*usec = total;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	uint64_t n, mult = 1;
	int r = parse_digits(&s, &n);

	if (r < 0)
		return r;
	switch (*s) {
	case 'K':
		mult = UINT64_C(1) << 10;
		s++;
		break;
	case 'M':
		mult = UINT64_C(1) << 20;
		s++;
		break;
	case 'G':
		mult = UINT64_C(1) << 30;
		s++;
		break;
	default:
		break;
	}
	if (*s == 'B')
		s++;
	if (*s)
		return -EINVAL;
	if (n > UINT64_MAX / mult)
		return -ERANGE;
	*bytes = n * mult;
	return 0;
}

char *parse_format_duration(uint64_t usec, char *buf, int len)
{
	int off = 0;

	if (len <= 0)
		return buf;
	if (usec == 0) {
		snprintf(buf, (size_t)len, "0");
		return buf;
	}
	buf[0] = '\0';
	for (size_t i = 0; i < N_ELEMS(format_units) && off < len; i++) {
		uint64_t n = usec / format_units[i].usec;

		if (n == 0)
			continue;
		usec %= format_units[i].usec;
		off += snprintf(buf + off, (size_t)(len - off), "%s%" PRIu64 "%s", off ? " " : "",
				n, format_units[i].name);
	}
	return buf;
}

int parse_rate(const char *s, unsigned *count, uint64_t *period_usec)
{
	uint64_t n, unit;
	int r;

	if (strcmp(s, "0") == 0) {
		*count = 0;
		*period_usec = 0;
		return 0;
	}
	r = parse_digits(&s, &n);
	if (r < 0)
		return r;
	if (*s++ != '/' || duration_unit(&s, &unit) < 0 || *s)
		return -EINVAL;
	/* Finer than a second is a rate nobody means for new connections, and
	 * weeks are not a unit parse_format_rate writes. */
	if (unit != USEC_PER_SEC && unit != USEC_PER_MIN && unit != USEC_PER_HOUR &&
	    unit != USEC_PER_DAY)
		return -EINVAL;
	if (n < 1 || n > PARSE_RATE_MAX)
		return -ERANGE;
	*count = (unsigned)n;
	*period_usec = unit;
	return 0;
}

char *parse_format_rate(unsigned count, uint64_t period_usec, char *buf, int len)
{
	const char *unit = "s";

	if (count == 0) {
		snprintf(buf, (size_t)len, "0");
		return buf;
	}
	for (size_t i = 0; i < N_ELEMS(format_units); i++) {
		if (format_units[i].usec == period_usec) {
			unit = format_units[i].name;
			break;
		}
	}
	snprintf(buf, (size_t)len, "%u/%s", count, unit);
	return buf;
}
