//! Stack use of the kernel programs, read from the object itself: the verifier refuses a
//! program whose frames along a call chain exceed 512 bytes, and it only says so when it
//! refuses. This computes the same sum for every entry point, over every path of the code
//! (the verifier only counts the paths it explores, so this is an upper bound for both read
//! modes), with the frame rounding of the oldest kernels we support (32 bytes per frame; 6.10+
//! rounds to 16). A test holds every program to a margin below the limit.

use std::collections::HashMap;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SymbolKind};

/// The verifier's limit on the combined stack of a call chain.
pub(crate) const MAX_BPF_STACK: u32 = 512;

/// `call` with `src_reg` = `BPF_PSEUDO_CALL`: a call to a function of the object.
const BPF_CALL: u8 = 0x85;
const BPF_PSEUDO_CALL: u8 = 1;
const BPF_LD_IMM64: u8 = 0x18;
const BPF_MOV64_REG: u8 = 0xbf;
const BPF_ADD64_IMM: u8 = 0x07;
/// Class bits of load/store instructions (`ldx`, `stx`, `st`).
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const FP: u8 = 10;

/// One function of the object: where it is, its own frame, and whom it calls.
#[derive(Debug, Default, Clone)]
struct Function {
    section: usize,
    start: u64,
    end: u64,
    frame: u32,
    callees: Vec<String>,
    /// True for a program entry point (the first function of a program section).
    entry: bool,
}

/// Combined stack depth of every entry point (program name → bytes, frames rounded to 32).
pub(crate) fn combined_depths(object_bytes: &[u8]) -> Result<Vec<(String, u32)>, String> {
    let file = object::File::parse(object_bytes).map_err(|e| e.to_string())?;
    let mut funcs: HashMap<String, Function> = HashMap::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let Some(idx) = sym.section_index() else {
            continue;
        };
        let name = sym.name().map_err(|e| e.to_string())?.to_string();
        let sec = file.section_by_index(idx).map_err(|e| e.to_string())?;
        let sec_name = sec.name().unwrap_or("");
        funcs.insert(
            name,
            Function {
                section: idx.0,
                start: sym.address(),
                end: sym.address() + sym.size(),
                entry: sec_name != ".text",
                ..Default::default()
            },
        );
    }
    let names: Vec<String> = funcs.keys().cloned().collect();
    for name in &names {
        let f = funcs[name].clone();
        let sec = file
            .section_by_index(object::SectionIndex(f.section))
            .map_err(|e| e.to_string())?;
        let data = sec.data().map_err(|e| e.to_string())?;
        // Calls to another section name either the function's symbol or the section's symbol
        // (then the instruction's immediate gives the place: `(imm + 1) * 8`, REL-style).
        let relocs: HashMap<u64, Result<String, usize>> = sec
            .relocations()
            .filter_map(|(off, r)| match r.target() {
                RelocationTarget::Symbol(si) => {
                    let s = file.symbol_by_index(si).ok()?;
                    if s.kind() == SymbolKind::Section {
                        Some((off, Err(s.section_index()?.0)))
                    } else {
                        Some((off, Ok(s.name().ok()?.to_string())))
                    }
                }
                _ => None,
            })
            .collect();
        let code = data
            .get(f.start as usize..f.end as usize)
            .ok_or_else(|| format!("{name}: outside its section"))?;
        let func_at = |section: usize, at: u64| {
            funcs
                .iter()
                .find(|(_, g)| g.section == section && g.start == at)
                .map(|(n, _)| n.clone())
        };
        let (frame, callees) = scan(code, f.start, |off, imm| {
            let target = (imm + 1).checked_mul(8).and_then(|t| u64::try_from(t).ok());
            match relocs.get(&off) {
                Some(Ok(name)) => Some(name.clone()),
                Some(Err(section)) => func_at(*section, target?),
                // A call within the section: relative to the next instruction.
                None => func_at(f.section, u64::try_from(off as i64 + 8 + (imm * 8)).ok()?),
            }
        });
        let e = funcs.get_mut(name).ok_or("function vanished")?;
        e.frame = frame;
        e.callees = callees;
    }
    let mut out = Vec::new();
    for (name, f) in &funcs {
        if f.entry {
            out.push((name.clone(), chain_depth(name, &funcs, 0)?));
        }
    }
    out.sort();
    if std::env::var_os("DETECTOR_STACK_DEBUG").is_some() {
        let mut all: Vec<_> = funcs.iter().collect();
        all.sort_by_key(|(n, _)| n.as_str());
        for (n, f) in all {
            eprintln!("{n}: frame {} callees {:?}", f.frame, f.callees);
        }
    }
    Ok(out)
}

/// Largest frame plus callees along any chain from `name`.
fn chain_depth(name: &str, funcs: &HashMap<String, Function>, level: u32) -> Result<u32, String> {
    if level > 8 {
        return Err(format!("call chain through {name} deeper than 8"));
    }
    let f = funcs
        .get(name)
        .ok_or_else(|| format!("call to unknown function {name}"))?;
    let own = f.frame.max(1).div_ceil(32) * 32;
    let mut deepest = 0;
    for c in &f.callees {
        deepest = deepest.max(chain_depth(c, funcs, level + 1)?);
    }
    Ok(own + deepest)
}

/// The frame size of one function (the farthest stack byte below `r10` it touches or hands
/// out) and the functions it calls.
fn scan(code: &[u8], base: u64, callee: impl Fn(u64, i64) -> Option<String>) -> (u32, Vec<String>) {
    let mut frame: i64 = 0;
    let mut callees = Vec::new();
    // Registers that hold `r10 + k`.
    let mut fp_derived: [Option<i64>; 11] = [None; 11];
    let mut i = 0;
    while i + 8 <= code.len() {
        let op = code[i];
        let dst = code[i + 1] & 0x0f;
        let src = code[i + 1] >> 4;
        let off = i64::from(i16::from_le_bytes([code[i + 2], code[i + 3]]));
        let imm = i64::from(i32::from_le_bytes([
            code[i + 4],
            code[i + 5],
            code[i + 6],
            code[i + 7],
        ]));
        let class = op & 0x07;
        match op {
            BPF_LD_IMM64 => {
                fp_derived[usize::from(dst).min(10)] = None;
                i += 16;
                continue;
            }
            BPF_MOV64_REG if dst < 10 => {
                fp_derived[usize::from(dst)] = if src == FP {
                    Some(0)
                } else {
                    fp_derived.get(usize::from(src)).copied().flatten()
                };
            }
            BPF_ADD64_IMM if dst < 10 => {
                if let Some(k) = fp_derived[usize::from(dst)] {
                    fp_derived[usize::from(dst)] = Some(k + imm);
                    frame = frame.min(k + imm);
                }
            }
            BPF_CALL => {
                let at = base + i as u64;
                if src == BPF_PSEUDO_CALL {
                    if let Some(t) = callee(at, imm) {
                        callees.push(t);
                    }
                }
                // Calls clobber r0-r5.
                for r in fp_derived.iter_mut().take(6) {
                    *r = None;
                }
            }
            _ => {
                let on_fp = (class == CLASS_LDX && src == FP)
                    || ((class == CLASS_ST || class == CLASS_STX) && dst == FP);
                if on_fp {
                    frame = frame.min(off);
                } else if class == CLASS_LDX || class == CLASS_STX || class == CLASS_ST {
                    let base_reg = if class == CLASS_LDX { src } else { dst };
                    if let Some(Some(k)) = fp_derived.get(usize::from(base_reg)) {
                        frame = frame.min(k + off);
                    }
                }
                // Any other write to a register ends what we knew of it.
                let writes_dst = matches!(class, 0x04 | 0x07 | CLASS_LDX);
                if writes_dst && dst < 10 && op != BPF_ADD64_IMM {
                    fp_derived[usize::from(dst)] = None;
                }
            }
        }
        i += 8;
    }
    callees.sort();
    callees.dedup();
    (u32::try_from(-frame).unwrap_or(u32::MAX), callees)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room kept below the limit: a compiler or kernel change must not push a program over.
    const MARGIN: u32 = 64;

    #[test]
    fn every_program_keeps_a_stack_margin() {
        let object = super::super::loader::object();
        if object.is_empty() {
            return; // AYA_BUILD_SKIP build: no object to inspect.
        }
        let depths = combined_depths(object).expect("object");
        assert!(depths.len() >= 15, "{depths:?}");
        let over: Vec<_> = depths
            .iter()
            .filter(|(_, d)| *d > MAX_BPF_STACK - MARGIN)
            .collect();
        assert!(
            over.is_empty(),
            "programs within {MARGIN} bytes of the {MAX_BPF_STACK}-byte stack limit: {over:?} (all: {depths:?})"
        );
    }

    #[test]
    fn frames_are_read_from_stores_and_handed_out_pointers() {
        // r1 = r10; r1 += -72; *(u64 *)(r10 - 16) = r2; exit
        let code = [
            [0xbf, 0xa1, 0, 0, 0, 0, 0, 0],
            [0x07, 0x01, 0, 0, 0xb8, 0xff, 0xff, 0xff],
            [0x7b, 0x2a, 0xf0, 0xff, 0, 0, 0, 0],
            [0x95, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let (frame, callees) = scan(&code, 0, |_, _| None);
        assert_eq!((frame, callees.len()), (72, 0));
    }
}
