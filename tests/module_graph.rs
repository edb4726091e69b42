//! The module map of `docs/architecture.md` holds: data flows one way. This reads every file
//! under `src/`, collects which top-level rooms (and `protocol::*` rooms) each names through
//! `crate::…` outside its tests, and fails on any dependency cycle other than the one tangle
//! still being taken apart (configuration section types living in the rooms that use them; see
//! issue 11), so no new cycle can come in unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The rooms still in one cycle: `config` imports section types from the runtime rooms, which
/// import `ConfigProblem` back. Shrink this list as the cycle is cut; never grow it.
const KNOWN_TANGLE: &[&str] = &[
    "config",
    "directory",
    "error",
    "kerberos",
    "policy",
    "preflight",
    "server",
    "state",
    "sts",
];

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

#[test]
fn no_module_cycle_outside_the_known_tangle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    collect(&src, &src, &mut graph);
    assert!(graph.len() > 15, "read too few rooms: {:?}", graph.keys());
    let mut problems = Vec::new();
    for room in graph.keys() {
        let cycle = cycle_through(&graph, room);
        let known = KNOWN_TANGLE.contains(&room.as_str())
            && cycle
                .iter()
                .all(|other| KNOWN_TANGLE.contains(&other.as_str()));
        if !cycle.is_empty() && !known {
            problems.push(format!("{room} is in a cycle with {cycle:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_protocol_rooms_and_leaves_depend_on_no_upper_room() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    collect(&src, &src, &mut graph);
    let lower = |room: &str| {
        room.starts_with("protocol::")
            || ["clock", "net", "random", "secret", "crypto", "metrics"].contains(&room)
    };
    for (room, used) in graph.iter().filter(|(room, _)| lower(room)) {
        let upper: Vec<_> = used.iter().filter(|d| !lower(d)).collect();
        assert!(upper.is_empty(), "{room} reaches up to {upper:?}");
    }
}
