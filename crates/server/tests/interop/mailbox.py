"""Prepare or inspect the server's mailbox over IMAPS with Python's imaplib, so a test can set
up what a client will find and check what a client changed without trusting that client.

Usage: mailbox.py ACTION [ACTION ...] where each ACTION is one of
  create:FOLDER                      create a folder
  append:FOLDER:SUBJECT[:FLAG ...]   append a small message with the given flags
  flag:FOLDER:SUBJECT:+FLAG|-FLAG    add or remove a flag on the messages with that subject
  delete:FOLDER:SUBJECT              flag \\Deleted and expunge the messages with that subject
  dump                               print the mailbox as JSON:
                                     {folder: [{"subject", "flags", "uid"}, ...]}
Environment: IMAPS_PORT, CAFILE, ADDRESS, PASSWORD."""

import imaplib
import json
import os
import re
import ssl
import sys

ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
conn = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS_PORT"]), ssl_context=ctx, timeout=20)
conn.login(os.environ["ADDRESS"], os.environ["PASSWORD"])


def check(result):
    typ, data = result
    assert typ == "OK", data
    return data


def quoted(folder):
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uids_with_subject(folder, subject):
    check(conn.select(quoted(folder)))
    data = check(conn.uid("SEARCH", "CHARSET", "UTF-8", "HEADER", "Subject", quoted(subject)))
    uids = data[0].decode().split()
    assert uids, f"no message with subject {subject!r} in {folder}"
    return ",".join(uids)


def folders():
    names = []
    for line in check(conn.list()):
        match = re.match(rb'\((?P<attrs>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.+)$', line)
        assert match, line
        if b"\\Noselect" in match.group("attrs"):
            continue
        name = match.group("name").decode()
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        names.append(name)
    return sorted(names)


def dump():
    result = {}
    for folder in folders():
        check(conn.select(quoted(folder), readonly=True))
        data = check(conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        messages = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, header = item
            uid = int(re.search(rb"UID (\d+)", meta).group(1))
            flags = sorted(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split())
            subject = header.decode().split(":", 1)[1].strip() if b":" in header else ""
            messages.append({"uid": uid, "subject": subject, "flags": flags})
        result[folder] = sorted(messages, key=lambda m: m["uid"])
    return result


for action in sys.argv[1:]:
    verb, _, rest = action.partition(":")
    if verb == "create":
        check(conn.create(quoted(rest)))
    elif verb == "append":
        folder, subject, *flags = rest.split(":")
        body = (
            f"From: sender@example.org\r\nTo: user@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{re.sub(r'[^A-Za-z0-9]', '', subject)}@example.org>\r\n"
            f"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nThe body of {subject}.\r\n"
        ).encode()
        check(conn.append(quoted(folder), "(" + " ".join(flags) + ")", None, body))
    elif verb == "flag":
        folder, subject, change = rest.split(":")
        uids = uids_with_subject(folder, subject)
        check(conn.uid("STORE", uids, change[0] + "FLAGS", "(" + change[1:] + ")"))
    elif verb == "delete":
        folder, subject = rest.split(":")
        uids = uids_with_subject(folder, subject)
        check(conn.uid("STORE", uids, "+FLAGS", "(\\Deleted)"))
        check(conn.expunge())
    elif verb == "dump":
        print(json.dumps(dump(), sort_keys=True))
    else:
        sys.exit(f"unknown action {action!r}")
conn.logout()
