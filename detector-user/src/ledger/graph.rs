//! `detector inventory graph -o FILE.svg`: identity → credential → destination, laid out and
//! drawn by `layout-rs` (a Graphviz-like layered layout with an SVG backend; it escapes the
//! labels). Edges are labelled with use and contact counts; credentials with findings are
//! drawn in colour (red: shared or used by a non-owner, orange: past rotation or a stale copy).

use std::collections::BTreeMap;

use layout::{
    backends::svg::SVGWriter,
    core::{base::Orientation, color::Color, style::StyleAttr},
    std_shapes::{
        render::get_shape_size,
        shapes::{Arrow, Element, ShapeKind},
    },
    topo::layout::VisualGraph,
};

use super::query::CredentialRecord;

/// Nodes drawn at most (a larger graph is cut, and says so in its title node).
pub(crate) const MAX_NODES: usize = 400;

const FONT: usize = 13;

fn node(vg: &mut VisualGraph, label: &str, fill: &str) -> layout::adt::dag::NodeHandle {
    let shape = ShapeKind::new_box(label);
    let look = StyleAttr::new(Color::fast("black"), 1, Some(Color::fast(fill)), 4, FONT);
    let size = get_shape_size(Orientation::LeftToRight, &shape, FONT, false);
    vg.add_node(Element::create(shape, look, Orientation::LeftToRight, size))
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let tail: String = s
        .chars()
        .rev()
        .take(max.saturating_sub(1))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// The SVG of identity → credential → destination for `records`.
pub(crate) fn svg(records: &[CredentialRecord]) -> String {
    let mut vg = VisualGraph::new(Orientation::LeftToRight);
    let mut identities = BTreeMap::new();
    let mut dests = BTreeMap::new();
    let mut nodes = 0usize;
    let mut cut = 0usize;
    for r in records {
        // A credential with its identities and destinations, or none of it.
        let need = 1 + r.identities.len() + r.reach.len();
        if nodes + need > MAX_NODES {
            cut += 1;
            continue;
        }
        let fill = if r.flags.shared || r.flags.non_owner {
            "#f4a6a6"
        } else if r.flags.past_rotation || r.flags.stale_copy {
            "#f8d49a"
        } else {
            "#dde8f5"
        };
        let owner = r.owner.as_deref().unwrap_or("owner unknown");
        let c = node(
            &mut vg,
            &format!(
                "{}\n{} · {}",
                short(&r.path, 48),
                r.category,
                short(owner, 40)
            ),
            fill,
        );
        nodes += 1;
        for u in &r.identities {
            let id = *identities.entry(u.identity.clone()).or_insert_with(|| {
                nodes += 1;
                node(&mut vg, &short(&u.identity, 48), "#e3f1e0")
            });
            let label = if u.owner == Some(false) {
                format!("{} uses (not owner)", u.count)
            } else {
                format!("{} uses", u.count)
            };
            vg.add_edge(Arrow::simple(&label), id, c);
        }
        let mut per_dest: BTreeMap<(String, u16), u64> = BTreeMap::new();
        for x in &r.reach {
            *per_dest.entry((x.addr.clone(), x.port)).or_default() += x.count;
        }
        for ((addr, port), count) in per_dest {
            let name = r
                .reach
                .iter()
                .find(|x| x.addr == addr && x.port == port)
                .and_then(|x| x.name.clone());
            let label = match name {
                Some(n) => format!("{n}\n{}", crate::engine::fields::dst_string(&addr, port)),
                None => crate::engine::fields::dst_string(&addr, port),
            };
            let d = *dests.entry((addr, port)).or_insert_with(|| {
                nodes += 1;
                node(&mut vg, &label, "#eeeeee")
            });
            vg.add_edge(Arrow::simple(&format!("{count}×")), c, d);
        }
    }
    if cut > 0 || records.is_empty() {
        let note = if records.is_empty() {
            "no credential matches".to_string()
        } else {
            format!("{cut} more credentials not drawn (over {MAX_NODES} nodes): filter with --identity or --credential")
        };
        node(&mut vg, &note, "#ffffff");
    }
    let mut w = SVGWriter::new();
    vg.do_it(false, false, false, &mut w);
    w.finalize()
}
