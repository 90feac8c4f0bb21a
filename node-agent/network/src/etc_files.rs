//! Contents of a container's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`.
//!
//! Pure functions from the container's settings (`dns`, `dns_search`, `dns_opt`,
//! `extra_hosts`, `hostname`, `domainname`) to file text; writing the files into the
//! container's root is the runtime's business, not this module's.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Errors in user-supplied names and host entries.
#[derive(Debug, thiserror::Error)]
pub enum EtcError {
    #[error("invalid host name {0:?}: 1-253 characters of letters, digits, '-' and '.'")]
    BadHostname(String),
    #[error("invalid extra_hosts entry {0:?}: expected HOST:IP or HOST=IP")]
    BadExtraHost(String),
    #[error("invalid {what} {value:?}: no whitespace or line breaks allowed")]
    BadWord { what: &'static str, value: String },
}

fn check_hostname(name: &str) -> Result<(), EtcError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-'))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EtcError::BadHostname(name.to_string()))
    }
}

fn check_word(what: &'static str, value: &str) -> Result<(), EtcError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EtcError::BadWord {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The `nameserver` addresses of a `resolv.conf` text, in order. Scoped IPv6 addresses
/// (`fe80::1%eth0`) are skipped: they cannot be used from another link.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    directive_values(text, "nameserver")
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The `search` domains of a `resolv.conf` text, in order.
pub fn search_domains(text: &str) -> Vec<String> {
    directive_values(text, "search")
        .map(str::to_owned)
        .collect()
}

/// Every word after `directive` on the lines that start with it.
fn directive_values<'a>(text: &'a str, directive: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines().flat_map(move |line| {
        let mut words = line.split_whitespace();
        let matches = words.next() == Some(directive);
        words.filter(move |_| matches)
    })
}

/// `/etc/resolv.conf`: the embedded server (the network gateway) when there is one, otherwise
/// the container's `dns` servers; then `search` and `options`. With the embedded server,
/// `dns` servers are its per-container upstreams instead (see [`crate::dns::DnsEntry`]), as
/// with Docker, so they do not appear here.
pub fn resolv_conf(
    embedded: Option<IpAddr>,
    dns: &[IpAddr],
    dns_search: &[String],
    dns_opt: &[String],
) -> Result<String, EtcError> {
    let mut s = String::new();
    let servers: Vec<IpAddr> = match embedded {
        Some(ip) => vec![ip],
        None => dns.to_vec(),
    };
    for ip in servers {
        let _ = writeln!(s, "nameserver {ip}");
    }
    if !dns_search.is_empty() {
        for d in dns_search {
            check_word("dns_search domain", d)?;
        }
        let _ = writeln!(s, "search {}", dns_search.join(" "));
    }
    if !dns_opt.is_empty() {
        for o in dns_opt {
            check_word("dns_opt option", o)?;
        }
        let _ = writeln!(s, "options {}", dns_opt.join(" "));
    }
    Ok(s)
}

/// Parses one `extra_hosts` entry: `name:ip` or `name=ip` (the IP may be IPv6, optionally in
/// brackets).
pub fn parse_extra_host(entry: &str) -> Result<(String, IpAddr), EtcError> {
    let bad = || EtcError::BadExtraHost(entry.to_string());
    let (name, ip) = entry
        .split_once('=')
        .or_else(|| entry.split_once(':'))
        .ok_or_else(bad)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    check_hostname(name).map_err(|_| bad())?;
    Ok((name.to_string(), ip))
}

/// `/etc/hosts`: loopback entries, the container's own addresses under its hostname (with
/// `hostname.domainname` first when there is a domain), then `extra_hosts`.
pub fn hosts(
    hostname: &str,
    domainname: Option<&str>,
    ips: &[IpAddr],
    extra_hosts: &[(String, IpAddr)],
) -> Result<String, EtcError> {
    check_hostname(hostname)?;
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    let names = match domainname.filter(|d| !d.is_empty()) {
        Some(d) => {
            check_hostname(d)?;
            format!("{hostname}.{d} {hostname}")
        }
        None => hostname.to_string(),
    };
    for ip in ips {
        let _ = writeln!(s, "{ip}\t{names}");
    }
    for (name, ip) in extra_hosts {
        check_hostname(name)?;
        let _ = writeln!(s, "{ip}\t{name}");
    }
    Ok(s)
}

/// `/etc/hostname`.
pub fn hostname_file(hostname: &str) -> Result<String, EtcError> {
    check_hostname(hostname)?;
    Ok(format!("{hostname}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_and_search_domains_are_read_in_order() {
        let text = "# comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch a.example b.example\nnameserverx 1.1.1.1\noptions ndots:2\nnameserver ::1\n";
        let servers: Vec<String> = nameservers(text).iter().map(ToString::to_string).collect();
        assert_eq!(servers, ["10.0.0.2", "::1"]);
        assert_eq!(search_domains(text), ["a.example", "b.example"]);
    }

    #[test]
    fn resolv_conf_points_at_embedded_server() {
        let s = resolv_conf(
            Some("10.234.1.1".parse().unwrap()),
            &["9.9.9.9".parse().unwrap()],
            &["svc.local".into(), "example.org".into()],
            &["ndots:2".into()],
        )
        .unwrap();
        assert_eq!(
            s,
            "nameserver 10.234.1.1\nsearch svc.local example.org\noptions ndots:2\n"
        );
        let s = resolv_conf(None, &["9.9.9.9".parse().unwrap()], &[], &[]).unwrap();
        assert_eq!(s, "nameserver 9.9.9.9\n");
        assert!(resolv_conf(None, &[], &["a b".into()], &[]).is_err());
        assert!(resolv_conf(None, &[], &[], &["x\nnameserver 1.2.3.4".into()]).is_err());
    }

    #[test]
    fn hosts_file() {
        let extra = vec![parse_extra_host("db.local:10.0.0.9").unwrap()];
        let s = hosts(
            "web",
            Some("example.org"),
            &["10.234.1.2".parse().unwrap()],
            &extra,
        )
        .unwrap();
        assert!(s.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(s.contains("10.234.1.2\tweb.example.org web\n"));
        assert!(s.ends_with("10.0.0.9\tdb.local\n"));
        assert!(hosts("bad host", None, &[], &[]).is_err());
    }

    #[test]
    fn extra_host_syntaxes() {
        assert_eq!(
            parse_extra_host("h=::1").unwrap(),
            ("h".to_string(), "::1".parse().unwrap())
        );
        assert_eq!(
            parse_extra_host("h:[fd00::1]").unwrap().1,
            "fd00::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            parse_extra_host("host.docker.internal:192.0.2.1")
                .unwrap()
                .0,
            "host.docker.internal"
        );
        assert!(parse_extra_host("nohost").is_err());
        assert!(parse_extra_host("h:notanip").is_err());
    }

    #[test]
    fn hostname_file_checks() {
        assert_eq!(hostname_file("web-1").unwrap(), "web-1\n");
        assert!(hostname_file("-x").is_err());
        assert!(hostname_file("").is_err());
    }
}
