/* The keys echod knows: their values, defaults and how they are written
 * back. Reading the files is config.c's concern. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config-int.h"
#include "parse.h"

#define FIELD(f) offsetof(struct config, f)

/* In the order config_dump writes them. */
static const struct config_key config_keys[] = {
    {"server", "listen", CONFIG_KIND_LISTEN, 0, 0, 0},
    {"server", "backlog", CONFIG_KIND_UINT, FIELD(backlog), 1, 65535},
    {"server", "user", CONFIG_KIND_USER, 0, 0, 0},
    {"server", "drain_timeout", CONFIG_KIND_DURATION, FIELD(drain_timeout_usec), 0, 0},
    {"limits", "max_connections", CONFIG_KIND_UINT, FIELD(max_connections), 1, 1000000},
    {"limits", "max_connections_per_source", CONFIG_KIND_UINT, FIELD(max_connections_per_source), 0,
     1000000},
    {"limits", "rate_per_source", CONFIG_KIND_RATE, 0, 0, 0},
    {"limits", "burst_per_source", CONFIG_KIND_UINT, FIELD(burst_per_source), 0, PARSE_RATE_MAX},
    {"limits", "source_prefix_v4", CONFIG_KIND_UINT, FIELD(source_prefix_v4), 1, 32},
    {"limits", "source_prefix_v6", CONFIG_KIND_UINT, FIELD(source_prefix_v6), 1, 128},
    {"limits", "idle_timeout", CONFIG_KIND_DURATION, FIELD(idle_timeout_usec), 0, 0},
    {"limits", "max_lifetime", CONFIG_KIND_DURATION, FIELD(max_lifetime_usec), 0, 0},
    {"access", "allow", CONFIG_KIND_ALLOW, 0, 0, 0},
    {"access", "deny", CONFIG_KIND_DENY, 0, 0, 0},
    {"log", "level", CONFIG_KIND_LEVEL, 0, 0, 0},
    {"log", "connections", CONFIG_KIND_BOOL, FIELD(log_connections), 0, 0},
    {"log", "target", CONFIG_KIND_TARGET, 0, 0, 0},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(N_ELEMS(config_keys) == CONFIG_N_KEYS, "CONFIG_N_KEYS must match config_keys");

static const char *const config_targets[] = {
    [LOG_TARGET_AUTO] = "auto",
    [LOG_TARGET_JOURNAL] = "journal",
    [LOG_TARGET_STDERR] = "stderr",
};

/* Remembers where a setting was made, for errors found after the files are
 * read. */
static int config_where_save(struct config_loader *ld, char **where)
{
	free(*where);
	if (asprintf(where, "%s:%u", ld->file, ld->line) < 0) {
		*where = NULL;
		return config_fail_sys(ld, -ENOMEM, ld->file);
	}
	return 0;
}

static int config_set_listen(struct config_loader *ld, const struct config_key *k, const char *v)
{
	struct config *c = ld->c;
	struct addr a[2], *grown;
	char shown[ADDR_STRLEN];
	const char *why;
	int n;

	/* An empty value empties the list built so far, as in systemd. */
	if (!*v) {
		free(c->listen);
		c->listen = NULL;
		c->n_listen = 0;
	}
	if (!*v)
		return config_where_save(ld, &ld->listen_cleared_at);
	n = addr_parse_listen(v, a, &why);
	if (n < 0)
		return config_fail(ld, k, "\"%s\": %s", v, why);
	for (int i = 0; i < n; i++) {
		for (size_t j = 0; j < c->n_listen; j++) {
			if (addr_equal(&a[i], &c->listen[j]) &&
			    addr_format((const struct sockaddr *)&a[i].ss, shown, sizeof(shown)) ==
				0)
				return config_fail(ld, k, "\"%s\": %s is already listed", v, shown);
		}
	}
	grown = realloc(c->listen, (c->n_listen + (size_t)n) * sizeof(*grown));
	if (!grown)
		return config_fail_sys(ld, -ENOMEM, ld->file);
	memcpy(grown + c->n_listen, a, (size_t)n * sizeof(*grown));
	c->listen = grown;
	c->n_listen += (size_t)n;
	return 0;
}

static int config_set_cidr(struct config_loader *ld, const struct config_key *k, const char *v,
			   struct cidr **list, size_t *n)
{
	struct cidr cidr;
	const char *why;

	if (!*v) {
		free(*list);
		*list = NULL;
		*n = 0;
		return 0;
	}
	if (access_parse_cidr(v, &cidr, &why) < 0)
		return config_fail(ld, k, "\"%s\": %s", v, why);
	if (access_list_add(list, n, &cidr) < 0)
		return config_fail_sys(ld, -ENOMEM, ld->file);
	return 0;
}

/* What a value of each kind should look like, for error messages. */
static const char *const config_kind_hints[] = {
    [CONFIG_KIND_UINT] = "a number",
    [CONFIG_KIND_DURATION] = "a duration (as in 500ms, 30s, 5min, 1h 30min)",
    [CONFIG_KIND_LEVEL] = "a level (debug, info, notice, warning, err)",
    [CONFIG_KIND_BOOL] = "a boolean (yes/no, true/false, on/off, 1/0)",
    [CONFIG_KIND_TARGET] = "a target (auto, journal, stderr)",
    [CONFIG_KIND_RATE] = "a rate (as in 20/s, 600/min, 1000/h; 0 for no limit)",
};

static int config_set_value(struct config_loader *ld, const struct config_key *k, const char *v)
{
	struct config *c = ld->c;
	char *field = (char *)c + k->off;
	uint64_t n;
	int r = -EINVAL;

	switch (k->kind) {
	case CONFIG_KIND_LISTEN:
		return config_set_listen(ld, k, v);
	case CONFIG_KIND_ALLOW:
		return config_set_cidr(ld, k, v, &c->access.allow, &c->access.n_allow);
	case CONFIG_KIND_DENY:
		return config_set_cidr(ld, k, v, &c->access.deny, &c->access.n_deny);
	case CONFIG_KIND_USER:
		free(c->user);
		c->user = strdup(v);
		if (!c->user)
			return config_fail_sys(ld, -ENOMEM, ld->file);
		/* Resolved once all files are read: only the setting in force
		 * has to name a real user. */
		return config_where_save(ld, &ld->user_at);
	case CONFIG_KIND_UINT:
		r = parse_uint(v, k->min, k->max, &n);
		if (r == 0)
			*(unsigned *)field = (unsigned)n;
		break;
	case CONFIG_KIND_DURATION:
		r = parse_duration(v, &n);
		/* Deadlines are now + duration: a bound far below UINT64_MAX
		 * keeps every such sum exact (and a year is more than any
		 * timeout means). */
		if (r == 0 && n > CONFIG_DURATION_MAX_USEC)
			return config_fail(ld, k, "\"%s\" is out of range (at most %s)", v,
					   CONFIG_DURATION_MAX_TEXT);
		if (r == 0)
			*(uint64_t *)field = n;
		break;
	case CONFIG_KIND_BOOL:
		r = parse_bool(v, (bool *)field);
		break;
	case CONFIG_KIND_LEVEL:
		c->log_level = log_level_parse(v);
		r = c->log_level < 0 ? c->log_level : 0;
		break;
	case CONFIG_KIND_RATE:
		r = parse_rate(v, &c->rate_per_source, &c->rate_period_usec);
		if (r == -ERANGE)
			return config_fail(ld, k, "\"%s\" is out of range (1..%u per unit, or 0)",
					   v, PARSE_RATE_MAX);
		break;
	case CONFIG_KIND_TARGET:
		for (size_t i = 0; i < N_ELEMS(config_targets) && r < 0; i++) {
			if (strcmp(v, config_targets[i]) == 0) {
				c->log_target = (enum log_target)i;
				r = 0;
			}
		}
		break;
	}
	if (r == -ERANGE && k->kind == CONFIG_KIND_UINT)
		return config_fail(ld, k, "\"%s\" is out of range (%u..%u)", v, k->min, k->max);
	if (r == -ERANGE)
		return config_fail(ld, k, "\"%s\" is too long a duration", v);
	if (r < 0)
		return config_fail(ld, k, "\"%s\" is not %s", v, config_kind_hints[k->kind]);
	return 0;
}

int config_key_set(struct config_loader *ld, const char *section, const char *name,
		   const char *value)
{
	const struct config_key *k = NULL;
	size_t i;

	for (i = 0; i < CONFIG_N_KEYS && !k; i++) {
		if (strcmp(section, config_keys[i].section) == 0 &&
		    strcmp(name, config_keys[i].name) == 0)
			k = &config_keys[i];
	}
	if (!k)
		return config_fail(ld, NULL, "unknown key \"%s\" in section [%s]", name, section);
	/* Lists accumulate across lines and an empty value resets them; any
	 * other key holds one value, so a second one in a file is a mistake. */
	if (k->kind != CONFIG_KIND_LISTEN && k->kind != CONFIG_KIND_ALLOW &&
	    k->kind != CONFIG_KIND_DENY) {
		i = (size_t)(k - config_keys);
		if (!*value)
			return config_fail(ld, k, "empty value");
		if (ld->seen[i])
			return config_fail(ld, k, "set twice in this file (first on line %u)",
					   ld->seen[i]);
		ld->seen[i] = ld->line;
	}
	return config_set_value(ld, k, value);
}

bool config_section_known(const char *name, size_t len)
{
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		if (strlen(config_keys[i].section) == len &&
		    memcmp(config_keys[i].section, name, len) == 0)
			return true;
	}
	return false;
}

int config_defaults(struct config *c)
{
	*c = (struct config){
	    .backlog = 511,
	    .drain_timeout_usec = UINT64_C(30) * 1000000,
	    .max_connections = 1024,
	    .max_connections_per_source = 64,
	    .source_prefix_v4 = 32,
	    .source_prefix_v6 = 64,
	    .idle_timeout_usec = UINT64_C(300) * 1000000,
	    .log_level = LOG_INFO,
	    .log_connections = true,
	    .log_target = LOG_TARGET_AUTO,
	};
	/* No built-in listen address: a file emptied by mistake must not
	 * open a port to the world (config_need_listen). */
	return 0;
}

static void config_dump_cidrs(const char *name, const struct cidr *list, size_t n, FILE *f)
{
	char buf[ADDR_STRLEN];

	if (n == 0)
		fprintf(f, "# %s: none\n", name);
	for (size_t i = 0; i < n; i++) {
		if (access_cidr_format(&list[i], buf, sizeof(buf)) == 0)
			fprintf(f, "%s = %s\n", name, buf);
	}
}

static void config_dump_key(const struct config *c, const struct config_key *k, FILE *f)
{
	const char *field = (const char *)c + k->off;
	char buf[ADDR_STRLEN];

	switch (k->kind) {
	case CONFIG_KIND_LISTEN:
		for (size_t i = 0; i < c->n_listen; i++) {
			if (addr_format((const struct sockaddr *)&c->listen[i].ss, buf,
					sizeof(buf)) == 0)
				fprintf(f, "listen = %s\n", buf);
		}
		break;
	case CONFIG_KIND_UINT:
		fprintf(f, "%s = %u\n", k->name, *(const unsigned *)field);
		break;
	case CONFIG_KIND_DURATION:
		fprintf(f, "%s = %s\n", k->name,
			parse_format_duration(*(const uint64_t *)field, buf, sizeof(buf)));
		break;
	case CONFIG_KIND_USER:
		if (c->user)
			fprintf(f, "user = %s\n", c->user);
		else
			fprintf(f, "# user: not set, echod keeps the user it was started as\n");
		break;
	case CONFIG_KIND_ALLOW:
		config_dump_cidrs(k->name, c->access.allow, c->access.n_allow, f);
		break;
	case CONFIG_KIND_DENY:
		config_dump_cidrs(k->name, c->access.deny, c->access.n_deny, f);
		break;
	case CONFIG_KIND_LEVEL:
		fprintf(f, "level = %s\n", log_level_name(c->log_level));
		break;
	case CONFIG_KIND_BOOL:
		fprintf(f, "%s = %s\n", k->name, *(const bool *)field ? "yes" : "no");
		break;
	case CONFIG_KIND_TARGET:
		fprintf(f, "target = %s\n", config_targets[c->log_target]);
		break;
	case CONFIG_KIND_RATE:
		fprintf(
		    f, "%s = %s\n", k->name,
		    parse_format_rate(c->rate_per_source, c->rate_period_usec, buf, sizeof(buf)));
		break;
	}
}

void config_dump(const struct config *c, FILE *f)
{
	const char *section = NULL;

	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		if (!section || strcmp(section, config_keys[i].section) != 0) {
			section = config_keys[i].section;
			fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
		}
		config_dump_key(c, &config_keys[i], f);
	}
}
