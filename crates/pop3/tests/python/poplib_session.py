"""A scripted POP3 session with Python's poplib against the sealmail server, over STLS or
implicit TLS, verifying the server certificate. Every RFC 1939 command, CAPA and AUTH PLAIN.

Usage: poplib_session.py <stls|implicit> <port> <ca-file> <address> <password>
The INBOX must hold exactly the three messages below, in this order.
"""

import base64
import poplib
import ssl
import sys

MODE, PORT, CA_FILE, ADDRESS, PASSWORD = sys.argv[1:6]
PORT = int(PORT)
MESSAGES = [
    b"Subject: first\r\n\r\n.leading dot\r\n..two dots\r\nplain\r\n",
    b"Subject: second\n\nbare lf body\nno final newline",
    b"Subject: third\r\nX-Other: y\r\n\r\nl1\r\nl2\r\nl3\r\n",
]
CONTEXT = ssl.create_default_context(cafile=CA_FILE)


def connect():
    if MODE == "implicit":
        return poplib.POP3_SSL("localhost", PORT, context=CONTEXT, timeout=10)
    pop = poplib.POP3("localhost", PORT, timeout=10)
    caps = pop.capa()
    assert "STLS" in caps, caps
    assert "USER" not in caps, "USER offered before TLS: %r" % caps
    try:
        pop.user(ADDRESS)
        raise AssertionError("USER accepted before STLS")
    except poplib.error_proto as e:
        assert b"TLS" in e.args[0], e
    pop.stls(context=CONTEXT)
    return pop


def lines_of(raw):
    """What a client sees of a message: its lines, CRLF or LF stripped."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [l[:-1] if l.endswith(b"\r") else l for l in lines]


def sent_size(raw):
    """Octets RETR sends for `raw` before dot-stuffing: every line ending CRLF (RFC 1939 sizes)."""
    return sum(len(line) + 2 for line in lines_of(raw))


def main():
    pop = connect()
    assert pop.getwelcome().startswith(b"+OK"), pop.getwelcome()
    caps = pop.capa()
    for cap in ["TOP", "UIDL", "USER", "SASL", "RESP-CODES", "AUTH-RESP-CODE",
                "PIPELINING", "EXPIRE", "IMPLEMENTATION"]:
        assert cap in caps, (cap, caps)
    assert caps["SASL"] == ["PLAIN"], caps
    assert "STLS" not in caps, caps

    try:
        pop.user(ADDRESS)
        pop.pass_("wrong password")
        raise AssertionError("wrong password accepted")
    except poplib.error_proto as e:
        assert e.args[0].startswith(b"-ERR [AUTH]"), e

    assert pop.user(ADDRESS).startswith(b"+OK")
    assert pop.pass_(PASSWORD).startswith(b"+OK")

    count, size = pop.stat()
    assert count == 3, count
    assert size == sum(sent_size(m) for m in MESSAGES), (size, [sent_size(m) for m in MESSAGES])
    resp, listing, _ = pop.list()
    assert resp.startswith(b"+OK"), resp
    assert listing == [b"%d %d" % (i + 1, sent_size(m)) for i, m in enumerate(MESSAGES)], listing
    assert pop.list(2) == b"+OK 2 %d" % sent_size(MESSAGES[1])
    resp, uidls, _ = pop.uidl()
    assert len(uidls) == 3 and len({u.split()[1] for u in uidls}) == 3, uidls
    assert pop.uidl(3) == b"+OK " + uidls[2], (pop.uidl(3), uidls)

    for i, message in enumerate(MESSAGES):
        resp, lines, octets = pop.retr(i + 1)
        assert resp.startswith(b"+OK"), resp
        assert lines == lines_of(message), (lines, lines_of(message))
    resp, lines, _ = pop.top(3, 2)
    assert lines == [b"Subject: third", b"X-Other: y", b"", b"l1", b"l2"], lines
    resp, lines, _ = pop.top(1, 0)
    assert lines == [b"Subject: first", b""], lines

    for bad in (lambda: pop.retr(4), lambda: pop.dele(0), lambda: pop.list(9)):
        try:
            bad()
            raise AssertionError("missing message accepted")
        except poplib.error_proto as e:
            assert b"no such message" in e.args[0], e

    assert pop.dele(1).startswith(b"+OK")
    try:
        pop.dele(1)
        raise AssertionError("double DELE accepted")
    except poplib.error_proto:
        pass
    assert pop.stat()[0] == 2
    assert pop.rset().startswith(b"+OK")
    assert pop.stat()[0] == 3
    assert pop.noop().startswith(b"+OK")
    assert pop.dele(2).startswith(b"+OK")
    # Leave without QUIT: nothing may be deleted.
    pop.sock.close()

    pop = connect()
    pop.user(ADDRESS)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 3, "a disconnect before QUIT deleted mail"
    # A second session meanwhile is refused with IN-USE.
    other = connect()
    try:
        other.user(ADDRESS)
        other.pass_(PASSWORD)
        raise AssertionError("second session got the maildrop lock")
    except poplib.error_proto as e:
        assert e.args[0].startswith(b"-ERR [IN-USE]"), e
    other.quit()
    assert pop.dele(2).startswith(b"+OK")
    assert pop.quit().startswith(b"+OK")

    # AUTH PLAIN with an initial response (RFC 5034), then the UPDATE result.
    pop = connect()
    token = base64.b64encode(b"\0" + ADDRESS.encode() + b"\0" + PASSWORD.encode()).decode()
    assert pop._shortcmd("AUTH PLAIN " + token).startswith(b"+OK")
    resp, listing, _ = pop.list()
    assert listing == [b"1 %d" % sent_size(MESSAGES[0]), b"2 %d" % sent_size(MESSAGES[2])], listing
    resp, uidls_after, _ = pop.uidl()
    assert [u.split()[1] for u in uidls_after] == [uidls[0].split()[1], uidls[2].split()[1]], \
        "UIDL not stable across sessions"
    pop.quit()
    print("poplib session passed (%s)" % MODE)


main()
