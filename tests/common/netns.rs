//! Network namespaces for partition tests: each node in its own namespace, joined to the
//! test's (root) namespace by a veth pair on one bridge, so the test reaches every node and
//! a blackhole route cuts nodes off from each other, not from the test.

use std::process::Command;

/// Namespaces `ns1..nsN` on the bridge, node `i` at `10.77.0.i`, the test at `10.77.0.254`.
pub struct Netns {
    tag: String,
    count: usize,
}

/// Runs `ip` with arguments; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Makes `count` namespaces on a bridge; an error when this host cannot (no `ip`, not
    /// root, no namespaces in a container).
    pub fn create(count: usize) -> Result<Netns, String> {
        let tag = format!("{}", std::process::id() % 100_000);
        let net = Netns { tag, count };
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", "10.77.0.254/24", "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=count {
            let (ns, veth) = (net.name(i), format!("akv{i}_{}", net.tag));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            let addr = format!("{}/24", net.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("akb_{}", self.tag)
    }

    /// The namespace of node `i` (1-based).
    pub fn name(&self, i: usize) -> String {
        format!("akn{i}_{}", self.tag)
    }

    /// The address of node `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("10.77.0.{i}")
    }

    /// Cuts node `i` off from every other node (both ways), not from the test.
    pub fn cut_off(&self, i: usize) -> Result<(), String> {
        self.routes("add", i)
    }

    /// Undoes [`Netns::cut_off`].
    pub fn heal(&self, i: usize) -> Result<(), String> {
        self.routes("del", i)
    }

    fn routes(&self, verb: &str, i: usize) -> Result<(), String> {
        for j in (1..=self.count).filter(|j| *j != i) {
            let to_j = format!("{}/32", self.addr(j));
            let to_i = format!("{}/32", self.addr(i));
            ip(&["-n", &self.name(i), "route", verb, "blackhole", &to_j])?;
            ip(&["-n", &self.name(j), "route", verb, "blackhole", &to_i])?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 1..=self.count {
            let _ = ip(&["netns", "del", &self.name(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}
