// Send one message with nodemailer over STARTTLS to sealmail's MX listener.
// Usage: node send.mjs PORT MARKER. Prints the accepted/rejected lists as JSON.
import nodemailer from "nodemailer";

const [port, marker] = process.argv.slice(2);
const transport = nodemailer.createTransport({
  host: "127.0.0.1",
  port: Number(port),
  secure: false,
  requireTLS: true,
  name: "nodemailer.test",
  tls: { rejectUnauthorized: false }, // self-signed test certificate
});
const info = await transport.sendMail({
  from: "sender@remote.test",
  to: ["alice@example.test", "nobody@example.test"],
  subject: "nodemailer",
  text: `Hello from nodemailer\n${marker}\n`,
});
console.log(JSON.stringify({ accepted: info.accepted, rejected: info.rejected, response: info.response }));
