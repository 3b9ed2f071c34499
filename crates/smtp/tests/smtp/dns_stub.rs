//! A stub DNS server on 127.0.0.1 (UDP and TCP on one port) answering from a fixed table, so
//! the SPF/DKIM/DMARC/ARC tests never ask the real DNS.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Records by (lowercase name without the final dot, type).
type Zone = HashMap<(String, RecordType), Vec<RData>>;

pub struct DnsStub {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DnsStub {
    pub async fn start() -> DnsStub {
        // One port for both transports: the resolver is given a single address.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let zone: Arc<Mutex<Zone>> = Arc::default();
        let udp_zone = Arc::clone(&zone);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(answer) = answer(&udp_zone, &buf[..n]) {
                    let _ = udp.send_to(&answer, from).await;
                }
            }
        });
        let tcp_zone = Arc::clone(&zone);
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let zone = Arc::clone(&tcp_zone);
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = stream.read_u16().await else {
                            return;
                        };
                        let mut query = vec![0u8; usize::from(len)];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let Some(answer) = answer(&zone, &query) else {
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
            zone,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Publish a TXT record (split into 255-byte character-strings as DNS requires).
    pub fn txt(&self, name: &str, text: &str) {
        let strings = text
            .as_bytes()
            .chunks(255)
            .map(|chunk| String::from_utf8(chunk.to_vec()).unwrap())
            .collect();
        self.add(name, RecordType::TXT, RData::TXT(TXT::new(strings)));
    }

    fn add(&self, name: &str, record_type: RecordType, data: RData) {
        self.zone
            .lock()
            .unwrap()
            .entry((name.trim_end_matches('.').to_ascii_lowercase(), record_type))
            .or_default()
            .push(data);
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The response to one query: the table's records, or NXDOMAIN for a name it lacks.
fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    let zone = zone.lock().unwrap();
    for question in &query.queries {
        response.add_query(question.clone());
        let name = question.name().to_ascii();
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        match zone.get(&(key.clone(), question.query_type())) {
            Some(records) => {
                for data in records {
                    let owner = Name::from_ascii(&name).ok()?;
                    response.add_answer(Record::from_rdata(owner, 60, data.clone()));
                }
            }
            None if zone.keys().any(|(known, _)| *known == key) => {}
            None => response.metadata.response_code = ResponseCode::NXDomain,
        }
    }
    response.to_vec().ok()
}
