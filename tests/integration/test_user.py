"""Started as root with `user` set, echod binds first, then runs as that
user: the master and every worker."""

import pwd

import harness as h

HOST = "127.0.0.1"


def uids(pid):
    """Real, effective, saved and filesystem uid of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def groups(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Groups:"):
                return [int(x) for x in line.split()[1:]]
    return []


class UserTest(h.TestCase):
    def test_drops_to_user_after_binding(self):
        nobody = pwd.getpwnam("nobody")
        # A privileged port proves the bind happened before the switch.
        port = 7 if h.probe(HOST, 7)[0] == "refused" else h.free_port()
        # nobody cannot reach the test's root-only NOTIFY_SOCKET: wait for the log.
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], server={"user": "nobody"}),
                        start=False, notify=False)
        d.start(wait_ready=False)
        d.wait_log(r"running as user nobody")
        d.wait_log(r"started")
        self.assertEqual(uids(d.pid), [nobody.pw_uid] * 4, "the master must have no root uid left")
        self.assertNotIn(0, groups(d.pid), "root's supplementary groups must be dropped")
        c = self.client(HOST, port)
        self.assertEqual(h.echo(c, b"as nobody\n"), b"as nobody\n")
        workers = d.wait_children(1)
        self.assertEqual(uids(workers[0]), [nobody.pw_uid] * 4)

    def test_unknown_user_is_a_config_error(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], server={"user": "no-such-user-here"}),
                        start=False)
        d.start(wait_ready=False)
        self.assertEqual(d.wait_exit(), 78)


if __name__ == "__main__":
    h.main(budget=60)
