"""[access] allow/deny CIDR rules, IPv4 and IPv6; deny wins over allow."""

import unittest

import harness as h

HOST = "127.0.0.1"


class AccessTest(h.TestCase):
    def start(self, access, v6=False):
        self.port = h.free_port()
        listen = [f"{HOST}:{self.port}"]
        if v6:
            self.port6 = h.free_port("::1")
            listen.append(f"[::1]:{self.port6}")
        self.d = self.daemon(
            h.config_text(
                listen=listen,
                limits={"max_connections_per_source": 0},
                access=access,
            )
        )
        return self.d

    def assert_rejected_with(self, reason, host, port, source=None):
        self.d.wait_children(0)  # earlier probes' workers are gone
        mark = self.d.log_mark()
        h.assert_rejected(self, host, port, source)
        e = self.d.wait_entry(
            lambda e: "reject_reason" in e.fields,
            since=mark,
            what=f"a refusal entry for a client from {source or host}",
        )
        self.assertEqual(e.fields["reject_reason"], reason, e.raw)
        if "remote_addr" in e.fields:
            self.assertEqual(e.fields["remote_addr"], source or host, e.raw)
        self.assertEqual(self.d.children(), [], "a refused client must not get a worker")

    def test_deny_refuses_that_address_only(self):
        self.start({"deny": "127.0.0.2"})
        self.assert_rejected_with("denied", HOST, self.port, source="127.0.0.2")
        h.assert_served(self, HOST, self.port, source="127.0.0.1")
        h.assert_served(self, HOST, self.port, source="127.0.0.3")

    def test_allow_refuses_everything_outside(self):
        self.start({"allow": "127.0.0.0/30"})
        self.assert_rejected_with("not_allowed", HOST, self.port, source="127.0.0.5")
        h.assert_served(self, HOST, self.port, source="127.0.0.1")
        h.assert_served(self, HOST, self.port, source="127.0.0.3")  # last of the /30
        h.assert_rejected(self, HOST, self.port, source="127.0.0.4")  # first past it

    def test_several_allow_rules_add_up(self):
        self.start({"allow": ["127.0.0.1/32", "127.0.0.9"]})
        h.assert_served(self, HOST, self.port, source="127.0.0.1")
        h.assert_served(self, HOST, self.port, source="127.0.0.9")
        self.assert_rejected_with("not_allowed", HOST, self.port, source="127.0.0.8")

    def test_deny_wins_over_allow(self):
        self.start({"allow": "127.0.0.0/8", "deny": "127.0.0.2/32"})
        self.assert_rejected_with("denied", HOST, self.port, source="127.0.0.2")
        h.assert_served(self, HOST, self.port, source="127.0.0.1")

    @unittest.skipUnless(h.ipv6_available(), "the kernel has no IPv6")
    def test_ipv6_allow(self):
        self.start({"allow": "::1/128"}, v6=True)
        h.assert_served(self, "::1", self.port6)
        # an IPv4 client matches no IPv6 allow rule
        self.assert_rejected_with("not_allowed", HOST, self.port)

    @unittest.skipUnless(h.ipv6_available(), "the kernel has no IPv6")
    def test_ipv6_deny(self):
        self.start({"deny": "::1"}, v6=True)
        self.assert_rejected_with("denied", "::1", self.port6)
        h.assert_served(self, HOST, self.port)


if __name__ == "__main__":
    h.main(budget=110)
