//! The module map of `docs/architecture.md` holds: data flows one way. This reads every file
//! under `src/`, collects which top-level rooms (and `protocol::*` rooms) each names through
//! `crate::…` outside its tests (doc links count: a link up is a dependency a reader follows),
//! and fails on any dependency cycle, on a leaf that reaches up, and on a name of a room that
//! does not exist (a stale path in a comment), so no new cycle can come in unnoticed.
//! `cargo test --test module_graph -- --nocapture` prints the map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The rooms that depend on no upper room: the protocol rooms and these. `config` (the file
/// schema) is one of them: every runtime room builds its types from it, so it may use only
/// leaves itself.
const LOWER: &[&str] = &[
    "clock", "config", "net", "random", "secret", "crypto", "metrics",
];

/// What the configuration schema may use: leaves that use nothing of the crate.
const CONFIG_MAY_USE: &[&str] = &["clock", "net", "secret"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn room_of(relative: &Path) -> Option<String> {
    let mut parts = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned());
    let first = parts.next()?;
    if first == "lib" || first == "main" {
        return None;
    }
    match (first.as_str(), parts.next()) {
        ("protocol", Some(second)) if second != "mod" => Some(format!("protocol::{second}")),
        _ => Some(first),
    }
}

fn dependencies(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name == "protocol" {
            let sub = rest["protocol::".len().min(rest.len())..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>();
            if !sub.is_empty() {
                found.insert(format!("protocol::{sub}"));
                continue;
            }
        }
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn collect(dir: &Path, src: &Path, graph: &mut Graph) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, src, graph);
            continue;
        }
        let relative = path.strip_prefix(src).unwrap();
        if path.extension().is_none_or(|e| e != "rs") || relative.ends_with("tests.rs") {
            continue;
        }
        let Some(room) = room_of(relative) else {
            continue;
        };
        let source = std::fs::read_to_string(&path).unwrap();
        let used: Vec<String> = dependencies(&source)
            .into_iter()
            .filter(|d| *d != room)
            .collect();
        graph.entry(room).or_default().extend(used);
    }
}

/// The rooms that reach `start` back through the graph (start's strongly connected set).
fn cycle_through(graph: &Graph, start: &str) -> BTreeSet<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(room) = todo.pop() {
            for next in graph.get(&room).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    reach(start)
        .into_iter()
        .filter(|other| other != start && reach(other).contains(start))
        .collect()
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    collect(&src, &src, &mut graph);
    graph
}

#[test]
fn no_module_cycle() {
    let graph = graph();
    assert!(graph.len() > 15, "read too few rooms: {:?}", graph.keys());
    for (room, used) in &graph {
        println!(
            "{room} -> {}",
            used.iter().cloned().collect::<Vec<_>>().join(" ")
        );
    }
    let problems: Vec<String> = graph
        .keys()
        .filter_map(|room| {
            let cycle = cycle_through(&graph, room);
            (!cycle.is_empty()).then(|| format!("{room} is in a cycle with {cycle:?}"))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_named_room_exists() {
    let graph = graph();
    for (room, used) in &graph {
        let missing: Vec<_> = used.iter().filter(|d| !graph.contains_key(*d)).collect();
        assert!(
            missing.is_empty(),
            "{room} names rooms that do not exist: {missing:?}"
        );
    }
}

#[test]
fn the_configuration_schema_is_a_leaf() {
    let graph = graph();
    let used = graph.get("config").expect("src/config.rs was read");
    let upper: Vec<_> = used
        .iter()
        .filter(|d| !CONFIG_MAY_USE.contains(&d.as_str()))
        .collect();
    assert!(upper.is_empty(), "config reaches up to {upper:?}");
}

#[test]
fn the_protocol_rooms_and_leaves_depend_on_no_upper_room() {
    let graph = graph();
    let lower = |room: &str| room.starts_with("protocol::") || LOWER.contains(&room);
    for (room, used) in graph.iter().filter(|(room, _)| lower(room)) {
        let upper: Vec<_> = used.iter().filter(|d| !lower(d)).collect();
        assert!(upper.is_empty(), "{room} reaches up to {upper:?}");
    }
}
