/* Value parsers shared by the config file and the command line. All are pure
 * functions of their input: no allocation, no global state. Each returns 0 or
 * -EINVAL (bad syntax) / -ERANGE (out of range). */
#ifndef ECHOD_PARSE_H
#define ECHOD_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* systemd-style duration: "500ms", "30s", "5min", "1h", "2d", "1h 30min",
 * a bare number meaning seconds; units us, ms, s, sec, m, min, h, hr, d.
 * Result in microseconds. */
int parse_duration(const char *s, uint64_t *usec);

/* Size in bytes with an optional K, M, G suffix (powers of 1024). */
int parse_size(const char *s, uint64_t *bytes);

/* Decimal unsigned integer within [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* yes/no, true/false, on/off, 1/0 (case-insensitive). */
int parse_bool(const char *s, bool *out);

/* Formats a duration the way parse_duration reads it back ("5min", "30s",
 * "500ms", "0"). Returns buf. */
char *parse_format_duration(uint64_t usec, char *buf, int len);

/* A rate of events: "N/s", "N/min", "N/h" or "N/d" (any spelling of those
 * units parse_duration takes), 1 <= N <= PARSE_RATE_MAX; or "0" for none
 * (count 0). */
#define PARSE_RATE_MAX 1000000
int parse_rate(const char *s, unsigned *count, uint64_t *period_usec);

/* Formats a rate the way parse_rate reads it back ("20/s", "0"). Returns
 * buf. */
char *parse_format_rate(unsigned count, uint64_t period_usec, char *buf, int len);

#endif
