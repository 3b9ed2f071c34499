//! A test-only authoritative DNS responder on 127.0.0.1 (UDP and TCP), answering from a fixed
//! table, so that MX lookups and DKIM key lookups never leave the machine.

use mail_auth::hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::{A, MX, TXT};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Table = Arc<Mutex<HashMap<(String, RecordType), Vec<RData>>>>;

pub struct DnsStub {
    pub addr: SocketAddr,
    table: Table,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DnsStub {
    /// Listen on one port for both UDP and TCP.
    pub async fn start() -> DnsStub {
        let table: Table = Arc::default();
        // Find a port free for both protocols.
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let udp_table = Arc::clone(&table);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                if let Some(answer) = answer(&udp_table, &buf[..n]) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        let tcp_table = Arc::clone(&table);
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let table = Arc::clone(&tcp_table);
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = stream.read_u16().await else {
                            return;
                        };
                        let mut query = vec![0u8; len as usize];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let Some(answer) = answer(&table, &query) else {
                            return;
                        };
                        let _ = stream.write_u16(answer.len() as u16).await;
                        let _ = stream.write_all(&answer).await;
                    }
                });
            }
        });
        DnsStub {
            addr,
            table,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn add(&self, name: &str, record_type: RecordType, data: RData) {
        self.table
            .lock()
            .unwrap()
            .entry((name.to_ascii_lowercase(), record_type))
            .or_default()
            .push(data);
    }

    pub fn mx(&self, domain: &str, preference: u16, host: &str) {
        let exchange = Name::from_ascii(format!("{host}.")).unwrap();
        self.add(
            domain,
            RecordType::MX,
            RData::MX(MX::new(preference, exchange)),
        );
    }

    pub fn a(&self, host: &str, ip: Ipv4Addr) {
        self.add(host, RecordType::A, RData::A(A(ip)));
    }

    /// A TXT record; values over 255 bytes are split into several strings, as in a zone file.
    pub fn txt(&self, name: &str, value: &str) {
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        self.add(name, RecordType::TXT, RData::TXT(TXT::new(strings)));
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn answer(table: &Table, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let mut known_name = false;
    for query in &request.queries {
        response.add_query(query.clone());
        let name = query.name().to_ascii();
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let table = table.lock().unwrap();
        known_name |= table.keys().any(|(n, _)| *n == name);
        for data in table
            .get(&(name.clone(), query.query_type()))
            .into_iter()
            .flatten()
        {
            response.add_answer(Record::from_rdata(query.name().clone(), 60, data.clone()));
        }
    }
    if !known_name {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response.to_vec().ok()
}
