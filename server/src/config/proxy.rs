//! The PROXY protocol on the PHR listener: whether the connections come through an L4 (TCP) load balancer
//! that announces the real client address in a PROXY protocol header, and which balancer addresses may do so.
//!
//! TLS ends in phr-server, so a TCP balancer in front cannot add `X-Forwarded-For`; without the PROXY
//! protocol every audit row would carry the balancer's address. With `PHR_PROXY_PROTOCOL=v2` (or `v1`,
//! `any`) each connection from a source in `PHR_PROXY_PROTOCOL_FROM` must begin with a header, whose source
//! address becomes the connection's peer address (audit `ip_address`, logs). A connection from any other
//! source is refused: with the balancer in front, a direct connection bypassed it (an open security group)
//! or is trying to claim an address. The list is required when the protocol is on, and refused when it is
//! off, so that half a configuration never starts.

use std::net::IpAddr;

use ipnet::IpNet;

use super::error::ConfigError;

/// Upper bound of the number of trusted balancer networks.
const MAX_SOURCES: usize = 256;

/// Which PROXY protocol versions the PHR listener expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyProtocolMode {
    /// No PROXY protocol: the TCP peer is the client.
    #[default]
    Off,
    /// The text header (`PROXY TCP4 …\r\n`), what nginx and HAProxy's `send-proxy` send.
    V1,
    /// The binary header, what AWS NLB, GCP and HAProxy's `send-proxy-v2` send.
    V2,
    /// Either version.
    Any,
}

/// Flags and variables of the PROXY protocol.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Expect a PROXY protocol header (off, v1, v2, any) before TLS on every PHR connection from
    /// PHR_PROXY_PROTOCOL_FROM; its source address is the client's for the audit row. Connections from other
    /// sources, and trusted ones without a valid header, are closed and counted.
    #[arg(long, env = "PHR_PROXY_PROTOCOL", value_enum, default_value_t = ProxyProtocolMode::Off)]
    pub proxy_protocol: ProxyProtocolMode,

    /// Comma-separated addresses or CIDR networks of the load balancer (e.g. 10.0.0.0/24,10.0.1.7); required
    /// when PHR_PROXY_PROTOCOL is on.
    #[arg(long, env = "PHR_PROXY_PROTOCOL_FROM", value_delimiter = ',')]
    pub proxy_protocol_from: Vec<String>,
}

/// The validated PROXY protocol settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Which versions are accepted; `Off` ignores `trusted`.
    pub mode: ProxyProtocolMode,
    /// The balancer networks whose connections must carry a header.
    pub trusted: Vec<IpNet>,
}

impl ProxyProtocol {
    /// Expect `mode` headers from `trusted` sources.
    pub fn new(mode: ProxyProtocolMode, trusted: Vec<IpNet>) -> Self {
        Self { mode, trusted }
    }

    /// Whether a connection from `peer` may (and must) carry a header. IPv4 peers of a dual-stack socket
    /// (`::ffff:a.b.c.d`) are matched as the IPv4 address they are.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.iter().any(|net| net.contains(&peer))
    }
}

impl ProxyArgs {
    /// Parses the networks and checks that the mode and the list go together.
    pub fn validate(&self) -> Result<ProxyProtocol, ConfigError> {
        let from = "PHR_PROXY_PROTOCOL_FROM";
        if self.proxy_protocol_from.len() > MAX_SOURCES {
            return Err(ConfigError::new(from, format!("more than {MAX_SOURCES} entries")));
        }
        let trusted = self
            .proxy_protocol_from
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_source(entry.trim()).ok_or_else(|| {
                    ConfigError::new(
                        from,
                        format!(
                            "entry {} ({entry:?}) is neither an IP address nor a CIDR network like 10.0.0.0/24",
                            i + 1
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match (self.proxy_protocol, trusted.is_empty()) {
            (ProxyProtocolMode::Off, false) => Err(ConfigError::new(
                from,
                "is set but PHR_PROXY_PROTOCOL is off: set PHR_PROXY_PROTOCOL=v2 (or v1, any) or unset this",
            )),
            (ProxyProtocolMode::Off, true) => Ok(ProxyProtocol::default()),
            (_, true) => Err(ConfigError::new(
                from,
                "is required when PHR_PROXY_PROTOCOL is on: list the load balancer's addresses or networks",
            )),
            (mode, false) => Ok(ProxyProtocol::new(mode, trusted)),
        }
    }
}

/// `10.0.0.0/24`, `fd00::/64`, or a single address (a /32 or /128).
fn parse_source(entry: &str) -> Option<IpNet> {
    entry.parse::<IpNet>().ok().or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from)).map(|net| net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: ProxyProtocolMode, from: &[&str]) -> ProxyArgs {
        ProxyArgs { proxy_protocol: mode, proxy_protocol_from: from.iter().map(|s| (*s).to_owned()).collect() }
    }

    #[test]
    fn the_mode_and_the_sources_must_go_together_and_each_source_must_parse() {
        let missing = args(ProxyProtocolMode::V2, &[]).validate().unwrap_err();
        let orphan = args(ProxyProtocolMode::Off, &["10.0.0.1"]).validate().unwrap_err();
        let garbage = args(ProxyProtocolMode::V2, &["10.0.0.0/24", "balancer.local"]).validate().unwrap_err();

        for error in [&missing, &orphan, &garbage] {
            assert_eq!(error.variable, "PHR_PROXY_PROTOCOL_FROM");
        }
        assert!(garbage.problem.contains("entry 2"), "{garbage}");
        assert!(missing.problem.contains("required"), "{missing}");
    }

    #[test]
    fn sources_are_networks_and_dual_stack_peers_match_as_ipv4() {
        let config = args(ProxyProtocolMode::Any, &["10.0.0.0/24", " 192.0.2.7 ", "fd00::/64"]).validate().unwrap();

        assert!(config.trusts("10.0.0.200".parse().unwrap()));
        assert!(config.trusts("::ffff:192.0.2.7".parse().unwrap()));
        assert!(config.trusts("fd00::1".parse().unwrap()));
        assert!(!config.trusts("10.0.1.1".parse().unwrap()));
        assert!(!config.trusts("192.0.2.8".parse().unwrap()));
        assert_eq!(args(ProxyProtocolMode::Off, &[]).validate().unwrap(), ProxyProtocol::default());
    }
}
