//! `[[group]]` and `[[pool]]`: relay groups and the listener pools they
//! serve, checked against the relays and each other.

use super::{Cx, valid_name};
use crate::config::model::{ANY_GROUP, DEFAULT_POOL, GroupConfig, PoolConfig, RelayConfig};
use crate::config::raw::{RawGroup, RawPool};
use std::collections::{HashMap, HashSet};
use toml::Spanned;

impl Cx<'_> {
    /// The `[[group]]`s, each naming configured relays; `None` when one is
    /// unusable (every problem reported).
    pub(super) fn groups(
        &mut self,
        raws: Vec<RawGroup>,
        relays: &[RelayConfig],
    ) -> Option<Vec<GroupConfig>> {
        let found = self.errors();
        let mut out = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for raw in raws {
            let name = raw.name.get_ref().trim().to_string();
            let span = raw.name.span();
            if !valid_name(&name) {
                self.error(
                    Some(span.clone()),
                    format!("group name {name:?} must be non-empty letters, digits, '-', '_' or '.' (\"*\" is every relay, not a group)"),
                );
            }
            self.unique(&mut seen, &name, &span, "group");
            if raw.relays.is_empty() {
                self.error(
                    Some(span.clone()),
                    format!("group {name:?}: relays is empty"),
                );
            }
            let mut members: Vec<String> = Vec::new();
            for r in &raw.relays {
                let relay = r.get_ref().trim();
                if !relays.iter().any(|c| c.name == relay) {
                    self.error(
                        Some(r.span()),
                        format!("group {name:?}: no [[relay]] is named {relay:?}"),
                    );
                } else if members.iter().any(|m| m == relay) {
                    self.warning(
                        Some(r.span()),
                        format!("group {name:?}: relay {relay:?} is listed twice"),
                    );
                } else {
                    members.push(relay.to_string());
                }
            }
            out.push(GroupConfig {
                name,
                relays: members,
                exclusive: raw.exclusive,
            });
        }
        (self.errors() == found).then_some(out)
    }

    /// The listener pools, the default one first (made up, with the order
    /// `["*"]`, when the config has none); `None` when one is unusable.
    /// `ecs_max`: `[dns] ecs_max_prefix_v4/v6` when ECS is on.
    pub(super) fn pools(
        &mut self,
        raws: Vec<RawPool>,
        groups: &[GroupConfig],
        ecs_max: Option<(u8, u8)>,
    ) -> Option<Vec<PoolConfig>> {
        let found = self.errors();
        let mut out: Vec<PoolConfig> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        // Each network, normalized, and the pool that first listed it.
        let mut networks_seen: HashMap<ipnet::IpNet, String> = HashMap::new();
        let mut named: HashSet<&str> = HashSet::new();
        for raw in raws {
            let name = raw.name.get_ref().trim().to_string();
            let span = raw.name.span();
            if !valid_name(&name) {
                self.error(
                    Some(span.clone()),
                    format!(
                        "pool name {name:?} must be non-empty letters, digits, '-', '_' or '.'"
                    ),
                );
            }
            self.unique(&mut seen, &name, &span, "pool");
            let is_default = name == DEFAULT_POOL;
            if is_default && !raw.networks.is_empty() {
                self.error(
                    Some(span.clone()),
                    format!("pool {DEFAULT_POOL:?} is everyone no other pool covers: it takes no networks"),
                );
            }
            if !is_default && raw.networks.is_empty() {
                self.error(
                    Some(span.clone()),
                    format!("pool {name:?}: networks is empty; list its client networks (CIDR), or name it {DEFAULT_POOL:?} for everyone else"),
                );
            }
            let networks = self.pool_networks(&name, &raw.networks, &mut networks_seen, ecs_max);
            let order = self.pool_order(&name, &raw.order, groups);
            named.extend(
                order
                    .iter()
                    .filter_map(|g| groups.iter().find(|c| &c.name == g))
                    .map(|g| g.name.as_str()),
            );
            out.push(PoolConfig {
                name,
                networks,
                order,
            });
        }
        for g in groups.iter().filter(|g| g.exclusive) {
            if !named.contains(g.name.as_str()) {
                self.warning(
                    None,
                    format!(
                        "group {:?} is exclusive but no pool names it: its relays serve nobody",
                        g.name
                    ),
                );
            }
        }
        match out.iter().position(|p| p.name == DEFAULT_POOL) {
            Some(i) => {
                let default = out.remove(i);
                out.insert(0, default);
            }
            None => out.insert(
                0,
                PoolConfig {
                    name: DEFAULT_POOL.to_string(),
                    networks: Vec::new(),
                    order: vec![ANY_GROUP.to_string()],
                },
            ),
        }
        (self.errors() == found).then_some(out)
    }

    /// A pool's networks, each normalized (host bits cleared, with a
    /// warning); a network another pool lists too is an error (which pool
    /// would it be?); one longer than ECS looks at is a warning (resolvers
    /// sending ECS get the answer of the wider network around it).
    fn pool_networks(
        &mut self,
        pool: &str,
        list: &[Spanned<String>],
        seen: &mut HashMap<ipnet::IpNet, String>,
        ecs_max: Option<(u8, u8)>,
    ) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for item in list {
            let Ok(net) = item.get_ref().trim().parse::<ipnet::IpNet>() else {
                self.error(
                    Some(item.span()),
                    format!("pool {pool:?}: {:?} is not a network (e.g. \"192.0.2.0/24\" or \"2001:db8::/32\")", item.get_ref()),
                );
                continue;
            };
            let trunc = net.trunc();
            if trunc != net {
                self.warning(
                    Some(item.span()),
                    format!("pool {pool:?}: {net} has host bits set; it means {trunc}"),
                );
            }
            let (max, key) = match (trunc, ecs_max) {
                (ipnet::IpNet::V4(_), Some((v4, _))) => (v4, "ecs_max_prefix_v4"),
                (ipnet::IpNet::V6(_), Some((_, v6))) => (v6, "ecs_max_prefix_v6"),
                (_, None) => (u8::MAX, ""),
            };
            if trunc.prefix_len() > max {
                self.warning(
                    Some(item.span()),
                    format!("pool {pool:?}: {trunc} is longer than [dns] {key} = {max}: a client subnet is read to /{max} only, so resolvers sending one get the answer for the /{max} around it"),
                );
            }
            match seen.get(&trunc) {
                Some(other) if other == pool => self.warning(
                    Some(item.span()),
                    format!("pool {pool:?}: {trunc} is listed twice"),
                ),
                Some(other) => self.error(
                    Some(item.span()),
                    format!("pool {pool:?}: {trunc} is also a network of pool {other:?}; a network belongs to one pool (a longer one inside it may belong to another)"),
                ),
                None => {
                    seen.insert(trunc, pool.to_string());
                    out.push(trunc);
                }
            }
        }
        out
    }

    /// A pool's `order`: configured group names or `*`, none twice; a
    /// group after `*` that `*` already covers is never tried (a warning).
    fn pool_order(
        &mut self,
        pool: &str,
        order: &Spanned<Vec<Spanned<String>>>,
        groups: &[GroupConfig],
    ) -> Vec<String> {
        if order.get_ref().is_empty() {
            self.error(
                Some(order.span()),
                format!(
                    "pool {pool:?}: order is empty; list the groups to try, e.g. [\"venue\", \"*\"]"
                ),
            );
        }
        let mut out: Vec<String> = Vec::new();
        for item in order.get_ref() {
            let name = item.get_ref().trim();
            let group = groups.iter().find(|g| g.name == name);
            if name != ANY_GROUP && group.is_none() {
                self.error(
                    Some(item.span()),
                    format!("pool {pool:?}: no [[group]] is named {name:?} (\"*\" is every relay not in an exclusive group)"),
                );
                continue;
            }
            if out.iter().any(|o| o == name) {
                self.warning(
                    Some(item.span()),
                    format!("pool {pool:?}: {name:?} is listed twice in order; the second is never tried"),
                );
                continue;
            }
            if out.iter().any(|o| o == ANY_GROUP) && group.is_some_and(|g| !g.exclusive) {
                self.warning(
                    Some(item.span()),
                    format!("pool {pool:?}: group {name:?} comes after \"*\", which already covers its relays: it is never tried"),
                );
            }
            out.push(name.to_string());
        }
        out
    }
}
