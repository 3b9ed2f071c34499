"""Drive sealmail's SMTP listeners with Python's smtplib, as a real client would.

Usage: smtplib_client.py mx|submission|implicit|dsn PORT MARKER [RECIPIENT]
(implicit: submission over implicit TLS, port 465 style, to RECIPIENT, default bob;
dsn: submission to bob asking for a success report, RFC 3461 parameters)
Exits non-zero (with a message) when any reply differs from what the server must answer.
"""
import smtplib
import ssl
import sys
from email.message import EmailMessage

mode, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
recipient = sys.argv[4] if len(sys.argv) > 4 else "bob@example.test"
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # self-signed test certificate

def message(sender, to):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = "smtplib " + mode
    msg.set_content("Hello from smtplib.\n" + marker + "\n.a line starting with a dot\n")
    return msg

def check(condition, what):
    if not condition:
        sys.exit("FAILED: " + what)

if mode == "implicit":
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=20, context=context) as smtp:
        smtp.ehlo("smtplib.test")
        check(smtp.has_extn("auth") and not smtp.has_extn("starttls"), "AUTH without STARTTLS")
        smtp.login("alice@example.test", "correct horse")
        refused = smtp.send_message(
            message("alice@example.test", [recipient]),
            from_addr="alice@example.test",
            to_addrs=[recipient],
        )
        check(refused == {}, "recipient accepted")
    print("ok")
    sys.exit(0)

with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
    code, _ = smtp.ehlo("smtplib.test")
    check(code == 250, "EHLO")
    for extension in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking", "starttls"):
        check(smtp.has_extn(extension), "extension " + extension)
    check(smtp.verify("alice@example.test")[0] == 252, "VRFY answers 252")
    smtp.starttls(context=context)
    smtp.ehlo("smtplib.test")
    if mode == "dsn":
        check(smtp.has_extn("dsn"), "DSN offered")
        smtp.login("alice@example.test", "correct horse")
        refused = smtp.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            message("alice@example.test", ["bob@example.test"]).as_string(),
            mail_options=["RET=HDRS", "ENVID=" + marker],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@example.test"],
        )
        check(refused == {}, "recipient accepted: %r" % refused)
    elif mode == "mx":
        check(not smtp.has_extn("auth"), "MX offers no AUTH")
        refused = smtp.send_message(
            message("sender@remote.test", ["alice@example.test", "nobody@example.test"]),
            from_addr="sender@remote.test",
            to_addrs=["alice@example.test", "nobody@example.test"],
        )
        check(list(refused) == ["nobody@example.test"], "unknown recipient refused: %r" % refused)
        check(refused["nobody@example.test"][0] == 550, "550 for unknown")
        try:
            smtp.sendmail("s@remote.test", ["nobody@example.test"], "Subject: x\r\n\r\nx\r\n")
            check(False, "all recipients refused must raise")
        except smtplib.SMTPRecipientsRefused:
            pass
    else:
        check(smtp.has_extn("auth"), "AUTH offered after STARTTLS")
        try:
            smtp.login("alice@example.test", "wrong password")
            check(False, "wrong password must fail")
        except smtplib.SMTPAuthenticationError as error:
            check(error.smtp_code == 535, "535 on a wrong password")
        smtp.login("alice@example.test", "correct horse")
        try:
            smtp.sendmail("bob@example.test", ["bob@example.test"], "Subject: x\r\n\r\nx\r\n")
            check(False, "foreign sender must fail")
        except smtplib.SMTPSenderRefused as error:
            check(error.smtp_code == 553, "553 for a foreign sender")
        refused = smtp.send_message(
            message("alice@example.test", ["bob@example.test", "far@elsewhere.test"]),
            from_addr="alice@example.test",
            to_addrs=["bob@example.test", "far@elsewhere.test"],
        )
        check(list(refused) == ["far@elsewhere.test"], "remote recipient refused: %r" % refused)
    smtp.quit()
print("ok")
