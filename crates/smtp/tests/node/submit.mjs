// Submit one message with nodemailer over implicit TLS (port 465 style), authenticated as
// alice. Usage: node submit.mjs PORT MARKER RECIPIENT. Prints the accepted/rejected lists.
import nodemailer from "nodemailer";

const [port, marker, recipient] = process.argv.slice(2);
const transport = nodemailer.createTransport({
  host: "127.0.0.1",
  port: Number(port),
  secure: true,
  name: "nodemailer.test",
  auth: { user: "alice@example.test", pass: "correct horse" },
  tls: { rejectUnauthorized: false }, // self-signed test certificate
});
const info = await transport.sendMail({
  from: "alice@example.test",
  to: [recipient],
  subject: "nodemailer over implicit TLS",
  text: `Hello from nodemailer\n${marker}\n`,
});
console.log(JSON.stringify({ accepted: info.accepted, rejected: info.rejected, response: info.response }));
