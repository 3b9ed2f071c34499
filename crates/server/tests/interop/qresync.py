"""Python imaplib against the real server over STARTTLS: CONDSTORE and QRESYNC resync after a
second connection changed the mailbox, and ESEARCH. Every check asserts; the script prints one
"ok <step>" line per step passed. Environment: IMAP_PORT, CAFILE, ADDRESS, PASSWORD."""

import imaplib
import os
import re
import ssl

CTX = ssl.create_default_context(cafile=os.environ["CAFILE"])
imaplib.IMAP4.timeout = 20  # no single read may hang the test


def connect():
    conn = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]), timeout=20)
    conn.starttls(ssl_context=CTX)
    conn.login(os.environ["ADDRESS"], os.environ["PASSWORD"])
    return conn


def command(conn, name, *args):
    """Send a command imaplib has no method for; return (status, untagged responses by type)."""
    conn.untagged_responses.clear()
    typ, data = conn._simple_command(name, *args)
    assert typ == "OK", (name, args, typ, data)
    if name == "SELECT":
        conn.state = "SELECTED"  # imaplib tracks the state only in its own select()
    untagged = {key: list(value) for key, value in conn.untagged_responses.items()}
    conn.untagged_responses.clear()
    return data, untagged


def check_ok(result):
    typ, data = result
    assert typ == "OK", data
    return data


def decode(items):
    return [item.decode() if isinstance(item, bytes) else item for item in items if item is not None]


def code(untagged, name):
    """The value of a response code such as [HIGHESTMODSEQ 7] from the untagged OK lines."""
    values = decode(untagged.get(name, []))
    assert values, (name, untagged)
    return int(values[-1])


def fetch_lines(untagged):
    """Untagged FETCH lines as {uid: (flags, modseq)}."""
    result = {}
    for line in decode(untagged.get("FETCH", [])):
        uid = re.search(r"UID (\d+)", line)
        flags = re.search(r"FLAGS \(([^)]*)\)", line)
        modseq = re.search(r"MODSEQ \((\d+)\)", line)
        assert uid and flags and modseq, f"FETCH line lacks UID, FLAGS or MODSEQ: {line}"
        result[int(uid.group(1))] = (set(flags.group(1).split()), int(modseq.group(1)))
    return result


def message(n):
    return (
        f"From: sender@example.org\r\nTo: user@example.org\r\nSubject: resync {n}\r\n"
        f"Message-ID: <resync{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


first = connect()
capabilities = check_ok(first.capability())[0].decode().split()
for name in ("CONDSTORE", "QRESYNC", "ESEARCH", "ENABLE"):
    assert name in capabilities, capabilities
for n in range(1, 6):
    typ, data = first.append("INBOX", "(\\Seen)" if n == 1 else None, None, message(n))
    assert typ == "OK", data
typ, data = first.enable("QRESYNC")
assert typ == "OK", data
_, untagged = command(first, "SELECT", "INBOX", "(CONDSTORE)")
uidvalidity = code(untagged, "UIDVALIDITY")
known_modseq = code(untagged, "HIGHESTMODSEQ")
_, untagged = command(first, "UID", "SEARCH", "ALL")
uids = [int(u) for u in decode(untagged["SEARCH"])[0].split()]
assert len(uids) == 5, uids
print("ok setup")

# A second connection changes flags, expunges two messages and adds one, while the first
# stays selected.
second = connect()
second.select("INBOX")
assert second.uid("STORE", str(uids[1]), "+FLAGS", "(\\Flagged)")[0] == "OK"
assert second.uid("STORE", f"{uids[2]}:{uids[3]}", "+FLAGS", "(\\Deleted)")[0] == "OK"
assert second.expunge()[0] == "OK"
typ, data = second.append("INBOX", None, None, message(6))
assert typ == "OK", data
new_uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
print("ok second-connection")

# The first connection, with QRESYNC enabled, learns of the changes on NOOP: VANISHED (never
# EXPUNGE) for the removed messages, FETCH with MODSEQ for the changed one.
_, untagged = command(first, "NOOP")
assert "EXPUNGE" not in untagged, f"EXPUNGE sent after ENABLE QRESYNC: {untagged}"
vanished = decode(untagged.get("VANISHED", []))
assert vanished == [f"{uids[2]}:{uids[3]}"], untagged
changes = fetch_lines(untagged)
assert "\\Flagged" in changes[uids[1]][0], changes
assert changes[uids[1]][1] > known_modseq, changes
assert decode(untagged.get("EXISTS", [])) == ["4"], untagged
first.logout()
print("ok live-vanished")

# A fresh connection resynchronizes from the remembered state in one SELECT.
third = connect()
assert third.enable("QRESYNC")[0] == "OK"
known_uids = f"{uids[0]}:{uids[-1]}"
_, untagged = command(
    third, "SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {known_modseq} {known_uids}))"
)
assert code(untagged, "UIDVALIDITY") == uidvalidity
current_modseq = code(untagged, "HIGHESTMODSEQ")
assert current_modseq > known_modseq, (current_modseq, known_modseq)
assert decode(untagged.get("VANISHED", [])) == [f"(EARLIER) {uids[2]}:{uids[3]}"], untagged
changes = fetch_lines(untagged)
assert set(changes) == {uids[1], new_uid}, changes
assert "\\Flagged" in changes[uids[1]][0], changes
assert all(modseq > known_modseq for _, modseq in changes.values()), changes
assert decode(untagged.get("EXISTS", [])) == ["4"], untagged
print("ok qresync-select")

# The same answer from UID FETCH (CHANGEDSINCE m VANISHED).
_, untagged = command(
    third, "UID", "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {known_modseq} VANISHED)"
)
assert decode(untagged.get("VANISHED", [])) == [f"(EARLIER) {uids[2]}:{uids[3]}"], untagged
assert set(fetch_lines(untagged)) == {uids[1], new_uid}, untagged
_, untagged = command(
    third, "UID", "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {current_modseq} VANISHED)"
)
assert "FETCH" not in untagged and "VANISHED" not in untagged, untagged
print("ok changedsince")

# CONDSTORE's conditional STORE: refused for a message modified after the given modseq.
data, untagged = command(
    third, "UID", "STORE", str(uids[1]), f"(UNCHANGEDSINCE {known_modseq})", "+FLAGS", "(\\Seen)"
)
assert re.search(rf"MODIFIED {uids[1]}\b".encode(), data[0]), data
data, untagged = command(
    third, "UID", "STORE", str(uids[4]), f"(UNCHANGEDSINCE {current_modseq})", "+FLAGS", "(\\Seen)"
)
assert b"MODIFIED" not in data[0], data
stored = fetch_lines(untagged)
assert "\\Seen" in stored[uids[4]][0] and stored[uids[4]][1] > current_modseq, stored
print("ok unchangedsince")

# ESEARCH: RETURN options, with the tag correlator, and SEARCH MODSEQ.
_, untagged = command(third, "UID", "SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "UNSEEN")
esearch = decode(untagged.get("ESEARCH", []))
assert len(esearch) == 1, untagged
unseen = sorted([uids[1], new_uid])
line = esearch[0]
assert re.match(r'\(TAG "[^"]+"\) UID ', line), line
assert f"MIN {unseen[0]}" in line and f"MAX {unseen[-1]}" in line, line
assert "COUNT 2" in line, line
assert f"ALL {unseen[0]},{unseen[1]}" in line, line
_, untagged = command(third, "SEARCH", "RETURN", "(COUNT)", "DELETED")
assert decode(untagged.get("ESEARCH", [])) and "COUNT 0" in decode(untagged["ESEARCH"])[0], untagged
# SEARCHRES: SAVE with MIN keeps only the MIN message in "$" (RFC 5182 section 2.1).
command(third, "UID", "SEARCH", "RETURN", "(SAVE MIN)", "UNSEEN")
_, untagged = command(third, "UID", "FETCH", "$", "(UID)")
assert [re.search(r"UID (\d+)", line).group(1) for line in decode(untagged["FETCH"])] == [
    str(unseen[0])
], untagged
_, untagged = command(third, "UID", "SEARCH", "MODSEQ", str(current_modseq + 1))
searched = decode(untagged["SEARCH"])[0]
match = re.fullmatch(r"(\d+) \(MODSEQ (\d+)\)", searched)
assert match and int(match.group(1)) == uids[4], searched
print("ok esearch")

third.logout()
second.logout()
print("ok logout")
