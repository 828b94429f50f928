/* echod: options, start-up and exit codes. Everything else lives in the
 * modules; this is the only place besides worker_run that exits. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "config.h"
#include "err.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "notify.h"
#include "sandbox.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: echod [OPTIONS]\n"
		"TCP echo service (RFC 862): a master that forks one worker per connection.\n"
		"\n"
		"  -c, --config PATH   configuration file (default %s);\n"
		"                      drop-ins are read from PATH.d/*.conf\n"
		"  -t, --check-config  check the configuration and exit (0 ok, 78 errors)\n"
		"      --dump-config   print the effective configuration and exit\n"
		"  -d, --debug         log at debug level whatever the configuration says\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n"
		"\n"
		"Signals: HUP reloads, TERM/INT drain and stop, QUIT stops at once,\n"
		"USR1 logs statistics. See echod(8).\n",
		ECHOD_CONFIG_PATH);
}

/* Started with standard descriptors closed (a careless init script, a
 * `2>&-`), the first socket would take fd 0, 1 or 2, and whatever is
 * written to stdout or stderr (errors, log lines) would go to a listener
 * or to a client. Each closed one is opened on /dev/null, as sshd does.
 * Returns 0 or -errno. */
static int main_std_fds(void)
{
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int null = open("/dev/null", O_RDWR | O_NOCTTY);
		if (null < 0)
			return err_last();
		/* open returns the lowest free number: fd itself, unless a
		 * lower one is closed too, which the loop already filled. */
		if (null != fd) {
			close(null);
			return -EBADF;
		}
	}
	return 0;
}

/* Drops root for the configured user once every socket is bound. */
static int main_drop_privileges(const struct config *cfg)
{
	if (!cfg->user)
		return 0;
	if (geteuid() != 0) {
		if (geteuid() != cfg->uid)
			log_notice("not started as root: keeping uid %ld, not switching to %s",
				   (long)geteuid(), cfg->user);
		return 0;
	}
	if (initgroups(cfg->user, cfg->gid) < 0 || setgid(cfg->gid) < 0 || setuid(cfg->uid) < 0)
		return err_last();
	/* Paranoia that costs nothing: root must be gone for good. */
	if (cfg->uid != 0 && setuid(0) == 0)
		return -EPERM;
	log_info("running as user %s", cfg->user);
	return 0;
}

int main(int argc, char **argv)
{
	enum { OPT_DUMP = 256 };
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", no_argument, NULL, 't'},
	    {"dump-config", no_argument, NULL, OPT_DUMP},
	    {"debug", no_argument, NULL, 'd'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct master_opts o = {.config_path = ECHOD_CONFIG_PATH};
	bool check = false, dump = false, help = false, version = false;
	int n_opts = 0;
	char err[CONFIG_ERR_MAX];
	struct config cfg;
	struct listen_set ls;
	int c, r;

	/* First: every message below may go to stdout or stderr. There is
	 * nobody to tell if this fails. */
	if (main_std_fds() < 0)
		return EXIT_OSERR;
	while ((c = getopt_long(argc, argv, "c:tdVh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config_path = optarg;
			break;
		case 't':
			check = true;
			break;
		case OPT_DUMP:
			dump = true;
			break;
		case 'd':
			o.debug = true;
			break;
		case 'V':
			version = true;
			break;
		case 'h':
			help = true;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
		n_opts++;
	}
	if (optind < argc) {
		fprintf(stderr, "echod: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	/* What each combination means is written in echod(8): --help and
	 * --version stand alone; --dump-config checks as --check-config does
	 * (it prints only a valid configuration), so the two together are
	 * the dump; --debug is about a running daemon's log and has nothing
	 * to say to either. Anything else is a mistake worth a usage error
	 * rather than a guess. */
	if ((help || version) && n_opts > 1) {
		fprintf(stderr, "echod: %s takes no other option\n", help ? "--help" : "--version");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (o.debug && (check || dump)) {
		fprintf(stderr, "echod: --debug has no effect with %s\n",
			dump ? "--dump-config" : "--check-config");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (help) {
		usage(stdout);
		return fflush(stdout) == 0 ? 0 : EXIT_OSERR;
	}
	if (version) {
		printf("echod %s\nworker sandbox: %s\ndefault config: %s\n", ECHOD_VERSION,
		       sandbox_kind(), ECHOD_CONFIG_PATH);
		return fflush(stdout) == 0 ? 0 : EXIT_OSERR;
	}

	notify_init();
	log_init();
	/* Before any descriptor exists, so that no signal is lost or acted on
	 * by default while starting. */
	r = master_block_signals();
	if (r < 0) {
		fprintf(stderr, "echod: cannot block signals: %s\n", strerror(-r));
		return EXIT_OSERR;
	}

	r = config_load(o.config_path, &cfg, err, sizeof(err));
	if (r == 0 && !notify_listen_passed() &&
	    (r = config_need_listen(&cfg, o.config_path, err, sizeof(err))) < 0)
		config_free(&cfg);
	if (r < 0) {
		log_print_escaped(stderr, err);
		return EXIT_CONFIG;
	}
	if (check || dump) {
		if (dump)
			config_dump(&cfg, stdout);
		config_free(&cfg);
		return fflush(stdout) == 0 ? 0 : EXIT_OSERR;
	}

	log_setup(cfg.log_target, o.debug ? LOG_DEBUG : cfg.log_level);
	if (log_enabled(LOG_DEBUG))
		log_struct(LOG_DEBUG, NULL, (const struct log_kv[]){{"CONFIG_FILES", cfg.files}}, 1,
			   "configuration read from %s", cfg.files);
	r = listen_open(&cfg, &ls, err, sizeof(err));
	if (r < 0) {
		log_err("%s", err);
		config_free(&cfg);
		return EXIT_OSERR;
	}
	r = main_drop_privileges(&cfg);
	if (r < 0) {
		log_err("cannot switch to user %s: %s", cfg.user, strerror(-r));
		listen_close(&ls);
		config_free(&cfg);
		return EXIT_OSERR;
	}
	return master_run(&o, &cfg, &ls);
}
