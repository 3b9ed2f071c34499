"""A scripted IMAP session with Python's imaplib against sealmail; every step asserts.

Usage: IMAP_PORT=1143 python3 imaplib_session.py
"""
import imaplib
import os
import re
import socket
import time

PORT = int(os.environ["IMAP_PORT"])
USER = "alice@example.org"
PASSWORD = "correct horse"


def ok(result):
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


def message(i, subject=None):
    subject = subject or f"hello {i}"
    return (
        f"From: Bob Example <bob@example.org>\r\n"
        f"To: alice@example.org\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        f"Message-ID: <m{i}@example.org>\r\n"
        f"\r\n"
        f"body text number {i}\r\n"
    ).encode()


def connect():
    conn = imaplib.IMAP4("127.0.0.1", PORT)
    ok(conn.login(USER, PASSWORD))
    return conn


# Greeting and pre-login capabilities.
M = imaplib.IMAP4("127.0.0.1", PORT)
assert "IMAP4REV1" in M.capabilities, M.capabilities
assert "AUTH=PLAIN" in M.capabilities, M.capabilities

# A wrong password is refused with AUTHENTICATIONFAILED, and the connection stays usable.
try:
    M.login(USER, "wrong")
    raise SystemExit("wrong password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e

# Commands in the wrong state get BAD (sent raw: imaplib refuses to send them itself).
M.send(b"W1 SELECT INBOX\r\n")
line = M.readline()
assert line.startswith(b"W1 BAD"), line

ok(M.login(USER, PASSWORD))
caps = ok(M.capability())[0].decode().split()
for cap in ["IMAP4rev2", "UIDPLUS", "MOVE", "IDLE", "CONDSTORE", "ESEARCH", "NAMESPACE"]:
    assert cap in caps, (cap, caps)

# LIST with the default folders, CREATE, LIST with a pattern.
listing = b"\n".join(ok(M.list()))
assert b'"INBOX"' in listing or b" INBOX" in listing, listing
assert b"\\Sent" in listing and b"\\Trash" in listing, listing
ok(M.create("Work/Projects"))
listing = ok(M.list('""', "Work/*"))
assert listing == [b'(\\HasNoChildren) "/" Work/Projects'], listing
listing = ok(M.list('""', "%"))
assert any(b"\\HasChildren" in l and l.endswith(b" Work") for l in listing), listing
ok(M.create("Entw\u00fcrfe".encode("utf-7").replace(b"+", b"&").decode()))
assert any(b"Entw&APw-rfe" in l for l in ok(M.list('""', "*"))), "modified UTF-7 name listed"

# APPEND three messages; APPENDUID comes back.
uids = []
for i in (1, 2, 3):
    flags = r"(\Flagged)" if i == 1 else None
    data = ok(M.append("INBOX", flags, imaplib.Time2Internaldate(time.time()), message(i)))
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert m, data
    uids.append(int(m.group(2)))
assert uids == sorted(uids) and len(set(uids)) == 3, uids

# APPEND to a missing folder asks the client to create it.
typ, data = M.append("Nope", None, None, message(9))
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)

# SELECT reports the count, UIDVALIDITY and UIDNEXT.
data = ok(M.select("INBOX"))
assert data == [b"3"], data
assert M.untagged_responses.get("UIDNEXT") == [str(uids[-1] + 1).encode()], M.untagged_responses

# SEARCH: all, by subject (FTS), by flag, by UID.
assert ok(M.search(None, "ALL")) == [b"1 2 3"]
assert ok(M.search(None, "SUBJECT", '"hello 2"')) == [b"2"]
assert ok(M.search(None, "FLAGGED")) == [b"1"]
assert ok(M.search(None, "NOT", "FLAGGED", "UNSEEN")) == [b"2 3"]
assert ok(M.search(None, "BODY", "number")) == [b"1 2 3"]
assert ok(M.uid("SEARCH", "UID", f"{uids[1]}:*")) == [f"{uids[1]} {uids[2]}".encode()]

# FETCH: flags, size, envelope, header fields, text (which sets \Seen).
data = ok(M.fetch("1:3", "(UID FLAGS RFC822.SIZE ENVELOPE)"))
assert len(data) == 3, data
first = data[0] if isinstance(data[0], bytes) else data[0][0]
assert b"\\Flagged" in first and b"ENVELOPE" in first, first
assert b'(("Bob Example" NIL "bob" "example.org"))' in first, first
data = ok(M.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
assert data[0][1] == b"Subject: hello 2\r\n\r\n", data
data = ok(M.fetch("2", "(FLAGS)"))
assert b"\\Seen" not in data[0], data
data = ok(M.fetch("2", "(BODY[TEXT])"))
assert data[0][1] == b"body text number 2\r\n", data
assert b"\\Seen" in data[0][0] or any(b"\\Seen" in d for d in data if isinstance(d, bytes)), data
data = ok(M.fetch("3", "(BODY.PEEK[]<0.6>)"))
assert data[0][1] == b"From: ", data
data = ok(M.fetch("1", "(BODYSTRUCTURE)"))
assert b'("TEXT" "PLAIN"' in data[0], data
data = ok(M.uid("FETCH", "1:*", "(FLAGS)"))
assert len(data) == 3, data

# STORE and EXPUNGE.
data = ok(M.store("1", "+FLAGS", r"(\Deleted)"))
assert b"\\Deleted" in data[0], data
data = ok(M.store("3", "+FLAGS.SILENT", r"($Important)"))
assert data == [None], data
assert ok(M.search(None, "KEYWORD", "$Important")) == [b"3"]
data = ok(M.expunge())
assert data == [b"1"], data
assert ok(M.search(None, "ALL")) == [b"1 2"]

# COPY with COPYUID, MOVE, STATUS.
typ, data = M.copy("1", "Work/Projects")
assert typ == "OK" and b"COPYUID" in data[0], (typ, data)
ok(M.uid("MOVE", str(uids[2]), "Work/Projects"))
assert ok(M.search(None, "ALL")) == [b"1"]
data = ok(M.status("Work/Projects", "(MESSAGES UIDNEXT UNSEEN)"))
assert b"MESSAGES 2" in data[0], data
typ, data = M.copy("1", "Missing")
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)

# A second connection's APPEND shows up here as EXISTS at the next command.
other = connect()
ok(other.append("INBOX", None, None, message(4)))
ok(M.noop())
assert M.untagged_responses.get("EXISTS", [b""])[-1] == b"2", M.untagged_responses

# IDLE: another client's APPEND is pushed immediately.
tag = b"IDLE1"
M.send(tag + b" IDLE\r\n")
line = M.readline()
assert line.startswith(b"+"), line
ok(other.append("INBOX", None, None, message(5)))
M.sock.settimeout(5)
line = M.readline()
assert re.match(rb"\* 3 EXISTS", line), line
M.send(b"DONE\r\n")
line = M.readline()
assert line.startswith(tag + b" OK"), line
M.sock.settimeout(None)
other.logout()

# CONDSTORE/QRESYNC resync: remember the state, let another client change flags and expunge,
# then reselect with QRESYNC and get exactly the changes (RFC 7162 section 3.2.5).
Q = connect()
ok(Q._simple_command("ENABLE", "QRESYNC"))
ok(Q.select("INBOX"))
validity = int(Q.untagged_responses["UIDVALIDITY"][-1])
modseq = int(Q.untagged_responses["HIGHESTMODSEQ"][-1])
known = ok(Q.uid("SEARCH", "ALL"))[0].decode().split()
assert len(known) == 3, known
ok(Q.unselect())
changer = connect()
ok(changer.select("INBOX"))
ok(changer.uid("STORE", known[0], "+FLAGS", r"(\Flagged)"))
ok(changer.uid("STORE", known[1], "+FLAGS", r"(\Deleted)"))
ok(changer.expunge())
changer.logout()
Q.untagged_responses.clear()
typ, data = Q._simple_command(
    "SELECT", "INBOX", f"(QRESYNC ({validity} {modseq} {known[0]}:{known[2]}))"
)
assert typ == "OK", (typ, data)
Q.state = "SELECTED"  # imaplib does not track a SELECT it did not send itself
vanished = Q.untagged_responses.get("VANISHED", [])
assert vanished == [f"(EARLIER) {known[1]}".encode()], vanished
fetched = Q.untagged_responses.get("FETCH", [])
assert len(fetched) == 1 and b"\\Flagged" in fetched[0] and b"MODSEQ" in fetched[0], fetched
# ESEARCH (RFC 4731) through imaplib's generic UID command.
typ, data = Q.uid("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
assert typ == "OK", (typ, data)
esearch = Q.untagged_responses.get("ESEARCH", [])
assert esearch and b"COUNT 2" in esearch[-1], esearch
Q.logout()

# SORT and THREAD (RFC 5256) on a folder of their own: a thread of three by References, and a
# forward that joins an older message by subject.
S = connect()
caps = ok(S.capability())[0].decode().split()
for cap in ["SORT", "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "OBJECTID"]:
    assert cap in caps, (cap, caps)
ok(S.create("Threads"))


def threaded(i, subject, day, refs=""):
    header = f"References: {refs}\r\n" if refs else ""
    return (
        f"From: Sender {i} <s{i}@example.org>\r\nTo: alice@example.org\r\n"
        f"Subject: {subject}\r\nDate: {day} Mar 2024 10:00:00 +0000\r\n"
        f"Message-ID: <t{i}@example.org>\r\n{header}\r\nthread body {i}\r\n"
    ).encode()


for raw in [
    threaded(1, "Budget", 5),
    threaded(2, "Re: Budget", 7, "<t1@example.org>"),
    threaded(3, "Offsite", 1),
    threaded(4, "Re: Re: Budget", 6, "<t1@example.org> <t2@example.org>"),
    threaded(5, "Fwd: offsite", 9),
]:
    ok(S.append("Threads", None, None, raw))
ok(S.select("Threads"))
assert ok(S.sort("(DATE)", "UTF-8", "ALL")) == [b"3 1 4 2 5"]
assert ok(S.sort("(REVERSE SUBJECT DATE)", "US-ASCII", "ALL")) == [b"3 5 1 4 2"]
assert ok(S.sort("(FROM)", "UTF-8", "NOT", "SUBJECT", "offsite")) == [b"1 2 4"]
uids = ok(S.uid("SEARCH", "ALL"))[0].split()
assert ok(S.uid("SORT", "(REVERSE DATE)", "UTF-8", "ALL")) == [
    b" ".join([uids[4], uids[1], uids[3], uids[0], uids[2]])
]
typ, data = S.sort("(DATE)", "KOI8-R", "ALL")
assert typ == "NO" and b"BADCHARSET" in data[0], (typ, data)
assert ok(S.thread("REFERENCES", "UTF-8", "ALL")) == [b"(3 5)(1 2 4)"]
assert ok(S.thread("ORDEREDSUBJECT", "UTF-8", "ALL")) == [b"(3 5)(1 (4)(2))"]
data = ok(S.uid("THREAD", "REFERENCES", "UTF-8", "ALL"))
assert data == [f"({uids[2].decode()} {uids[4].decode()})({uids[0].decode()} {uids[1].decode()} {uids[3].decode()})".encode()], data
data = ok(S.fetch("1:2", "(EMAILID THREADID)"))
ids = [re.search(rb"THREADID \((T[0-9a-f]+)\)", d).group(1) for d in data]
assert ids[0] == ids[1], data
S.logout()

# RENAME, DELETE, LSUB, NAMESPACE, CLOSE, LOGOUT.
ok(M.rename("Work/Projects", "Work/Done"))
assert ok(M.list('""', "Work/*")) == [b'(\\HasNoChildren) "/" Work/Done']
ok(M.subscribe("Work/Done"))
assert any(b"Work/Done" in l for l in ok(M.lsub()))
typ, data = M.delete("INBOX")
assert typ == "NO", (typ, data)
ok(M.close())
typ, data = M.logout()
assert typ == "BYE", (typ, data)

# A client that never sends LOGOUT: the server copes with the closed socket.
s = socket.create_connection(("127.0.0.1", PORT))
assert s.recv(1000).startswith(b"* OK")
s.sendall(b"a1 LOGIN alice@example.org \"correct horse\"\r\na2 SELECT INBOX\r\n")
time.sleep(0.2)
s.close()
print("imaplib session passed")
