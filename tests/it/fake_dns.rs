//! A DNS server for tests, on 127.0.0.1 over UDP and TCP (one port), that
//! answers A queries from a function of the name and how many times it was
//! asked, with TTL 0 so nothing may cache the answer. AAAA gets an empty
//! answer. `Silent` never answers, for timeout tests. A name whose first
//! label is `servfail`, `refused` or `nxdomain` gets that response code.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// The answer for (name without trailing dot, how many A queries for it
/// came before this one).
pub type Answer = Arc<dyn Fn(&str, usize) -> Vec<Ipv4Addr> + Send + Sync>;

/// A running fake DNS server; stops when dropped.
pub struct FakeDns {
    pub addr: SocketAddr,
    /// A queries seen, per name.
    pub asked: Arc<Mutex<HashMap<String, usize>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeDns {
    /// How many A queries `name` has had.
    pub fn asked(&self, name: &str) -> usize {
        self.asked.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

fn respond(query: &[u8], answer: &Answer, asked: &Mutex<HashMap<String, usize>>) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .set_response_code(ResponseCode::NoError);
    for q in request.queries() {
        response.add_query(q.clone());
        let name = q.name().to_ascii().trim_end_matches('.').to_owned();
        let code = match name.split('.').next() {
            Some("servfail") => ResponseCode::ServFail,
            Some("refused") => ResponseCode::Refused,
            Some("nxdomain") => ResponseCode::NXDomain,
            _ => ResponseCode::NoError,
        };
        if code != ResponseCode::NoError {
            response.set_response_code(code);
            continue;
        }
        if q.query_type() != RecordType::A {
            continue;
        }
        let n = {
            let mut asked = asked.lock().unwrap();
            let n = asked.entry(name.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        for ip in answer(&name, n) {
            response.add_answer(Record::from_rdata(q.name().clone(), 0, RData::A(A(ip))));
        }
    }
    response.to_vec().ok()
}

/// A UDP socket and a TCP listener on one 127.0.0.1 port. The port is
/// picked for UDP; another test may hold it for TCP, so pick again then.
async fn bind_pair() -> (UdpSocket, TcpListener, std::net::SocketAddr) {
    for _ in 0..64 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp, addr);
        }
    }
    panic!("no 127.0.0.1 port free for both UDP and TCP after 64 tries");
}

/// Starts the server. With `silent`, it reads queries and never answers.
pub async fn start_fake_dns(answer: Answer, silent: bool) -> FakeDns {
    let (udp, tcp, addr) = bind_pair().await;
    let asked = Arc::new(Mutex::new(HashMap::new()));
    let (a, q) = (answer.clone(), asked.clone());
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            if silent {
                continue;
            }
            if let Some(reply) = respond(&buf[..n], &a, &q) {
                let _ = udp.send_to(&reply, from).await;
            }
        }
    });
    let (a, q) = (answer, asked.clone());
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let (a, q) = (a.clone(), q.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(len) = s.read_u16().await else { return };
                    let mut query = vec![0u8; len as usize];
                    if s.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    if silent {
                        continue;
                    }
                    let Some(reply) = respond(&query, &a, &q) else { return };
                    if s.write_u16(reply.len() as u16).await.is_err() || s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    FakeDns {
        addr,
        asked,
        tasks: vec![udp_task, tcp_task],
    }
}
