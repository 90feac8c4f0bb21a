//! Building DNS replies from the registry: pure functions over `hickory-proto` messages.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::registry::Registry;

/// TTL of local answers: short, since replicas come and go.
const LOCAL_TTL: u32 = 5;
/// Builds the answer to `query` from local names, or `None` when it must be forwarded.
/// Pure apart from the registry's round-robin counter.
pub fn answer_locally(registry: &Registry, network: &str, query: &Message) -> Option<Message> {
    let q = query.queries().first()?;
    if query.op_code() != OpCode::Query {
        return None;
    }
    let qtype = q.query_type();
    if qtype == RecordType::PTR {
        return answer_reverse(registry, network, query);
    }
    let name = q.name().to_ascii();
    let ips = match qtype {
        RecordType::A | RecordType::AAAA => registry.lookup(network, &name, qtype)?,
        // a known name with another record type: say "no data" instead of forwarding
        _ => {
            registry.lookup(network, &name, RecordType::A)?;
            Vec::new()
        }
    };
    let mut resp = Message::new();
    let mut header = Header::response_from_request(query.header());
    header.set_authoritative(true);
    header.set_recursion_available(true);
    header.set_response_code(ResponseCode::NoError);
    resp.set_header(header);
    resp.add_query(q.clone());
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        resp.set_edns(edns);
    }
    for ip in ips {
        let rdata = match ip {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        resp.add_answer(Record::from_rdata(q.name().clone(), LOCAL_TTL, rdata));
    }
    Some(resp)
}

/// A PTR answer for an address of a container on `network`; `None` (forward) for others.
fn answer_reverse(registry: &Registry, network: &str, query: &Message) -> Option<Message> {
    let q = query.queries().first()?;
    let net = q.name().parse_arpa_name().ok()?;
    let full = if net.addr().is_ipv4() { 32 } else { 128 };
    if net.prefix_len() != full {
        return None;
    }
    let container = registry.reverse(network, net.addr())?;
    let target = Name::from_ascii(format!("{container}.")).ok()?;
    let mut resp = Message::new();
    let mut header = Header::response_from_request(query.header());
    header.set_authoritative(true);
    header.set_recursion_available(true);
    resp.set_header(header);
    resp.add_query(q.clone());
    resp.add_answer(Record::from_rdata(
        q.name().clone(),
        LOCAL_TTL,
        RData::PTR(PTR(target)),
    ));
    Some(resp)
}

pub(crate) fn servfail(query: &Message) -> Option<Vec<u8>> {
    let mut resp = Message::new();
    let mut header = Header::response_from_request(query.header());
    header.set_message_type(MessageType::Response);
    header.set_response_code(ResponseCode::ServFail);
    resp.set_header(header);
    resp.add_queries(query.queries().to_vec());
    resp.to_vec().ok()
}

/// Encodes `resp` for UDP within `limit` bytes (512 without EDNS): when the answers do not
/// fit, as many as fit are kept and TC is set so the client retries over TCP.
pub fn encode_for_udp(mut resp: Message, limit: usize) -> Option<Vec<u8>> {
    let limit = limit.clamp(512, 4096);
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    resp.set_truncated(true);
    let mut answers = resp.take_answers();
    loop {
        answers.pop();
        resp.insert_answers(answers.clone());
        let bytes = resp.to_vec().ok()?;
        if bytes.len() <= limit || answers.is_empty() {
            return Some(bytes);
        }
        resp.take_answers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::DnsEntry;
    use hickory_proto::op::Query;

    fn entry(name: &str, svc: &str, ip: [u8; 4]) -> DnsEntry {
        DnsEntry {
            container_name: name.into(),
            service: Some(svc.into()),
            aliases: vec![format!("{name}-alias")],
            ipv4: Some(ip.into()),
            ipv6: None,
            upstreams: vec![],
            netns: None,
        }
    }

    #[test]
    fn large_answers_are_truncated_for_udp() {
        let r = Registry::new();
        for i in 0..60u8 {
            r.register(
                "n",
                &format!("e{i}"),
                entry(&format!("app-web-{i}"), "web", [10, 0, 1, i]),
            );
        }
        let mut q = Message::new();
        q.set_id(9)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .add_query(Query::query(
                Name::from_ascii("web.").unwrap(),
                RecordType::A,
            ));
        let resp = answer_locally(&r, "n", &q).unwrap();
        assert_eq!(resp.answers().len(), 60);
        let bytes = encode_for_udp(resp.clone(), 512).unwrap();
        assert!(bytes.len() <= 512);
        let m = Message::from_vec(&bytes).unwrap();
        assert!(m.truncated());
        assert!(!m.answers().is_empty() && m.answers().len() < 60);
        let big = encode_for_udp(resp, 4096).unwrap();
        let m = Message::from_vec(&big).unwrap();
        assert!(!m.truncated());
        assert_eq!(m.answers().len(), 60);
    }

    #[test]
    fn reverse_lookup_names_the_container() {
        let r = Registry::new();
        r.register("n", "a", entry("app-web-1", "web", [10, 0, 0, 2]));
        let mut q = Message::new();
        q.set_id(5)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .add_query(Query::query(
                Name::from_ascii("2.0.0.10.in-addr.arpa.").unwrap(),
                RecordType::PTR,
            ));
        let resp = answer_locally(&r, "n", &q).unwrap();
        match resp.answers()[0].data() {
            RData::PTR(p) => assert_eq!(p.0.to_ascii(), "app-web-1."),
            other => panic!("not a PTR: {other:?}"),
        }
        let mut other = q.clone();
        other.queries_mut()[0].set_name(Name::from_ascii("3.0.0.10.in-addr.arpa.").unwrap());
        assert!(
            answer_locally(&r, "n", &other).is_none(),
            "unknown: forwarded"
        );
        assert!(
            answer_locally(&r, "m", &q).is_none(),
            "other network: forwarded"
        );
    }

    #[test]
    fn local_answer_is_authoritative_with_all_records() {
        let r = Registry::new();
        r.register("n", "a", entry("app-web-1", "web", [10, 0, 0, 2]));
        r.register("n", "b", entry("app-web-2", "web", [10, 0, 0, 3]));
        let mut q = Message::new();
        q.set_id(77)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(
                Name::from_ascii("web.").unwrap(),
                RecordType::A,
            ));
        let resp = answer_locally(&r, "n", &q).unwrap();
        assert_eq!(resp.id(), 77);
        assert!(resp.authoritative());
        assert_eq!(resp.answers().len(), 2);
        let mut unknown = q.clone();
        unknown.queries_mut()[0].set_name(Name::from_ascii("example.org.").unwrap());
        assert!(answer_locally(&r, "n", &unknown).is_none());
        let bytes = resp.to_vec().unwrap();
        assert_eq!(Message::from_vec(&bytes).unwrap().answers().len(), 2);
    }
}
