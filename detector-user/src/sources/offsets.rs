//! Offsets the kernel programs need, resolved on the running kernel:
//! - kernel structure members from BTF (`/sys/kernel/btf/vmlinux`), our stand-in for CO-RE;
//! - tracepoint fields from the tracefs `format` files, because fields move between versions
//!   (`sched_process_exit.group_dead` appeared in 6.16, io_uring `flags` widened).

use std::path::Path;

use btf_rs::{Btf, Type};
use detector_common::{direct, KernelOffsets, TracepointOffsets, NO_OFFSET};
use object::{Object as _, ObjectSection as _, SectionFlags};

/// Failure to resolve offsets.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    /// BTF could not be read.
    #[error("cannot read kernel BTF at {path}: {msg} (the agent needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)")]
    Btf {
        /// Path tried.
        path: String,
        /// Why.
        msg: String,
    },
    /// A member every capture needs is missing.
    #[error("kernel BTF has no member `{0}`; this kernel's layout is not supported")]
    Required(String),
    /// The direct loads of the object cannot be patched (the helper-call paths are used).
    #[error("direct loads not patched: {0}")]
    Direct(String),
}

/// Resolves `a.b.c` member paths against BTF.
pub(crate) struct BtfResolver {
    btf: Btf,
}

impl BtfResolver {
    /// Reads BTF from `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, OffsetError> {
        let btf = Btf::from_file(path).map_err(|e| OffsetError::Btf {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Ok(Self { btf })
    }

    fn struct_named(&self, name: &str) -> Option<Type> {
        let types = self.btf.resolve_types_by_name(name).ok()?;
        types.into_iter().find(|t| match t {
            Type::Struct(s) | Type::Union(s) => !s.members.is_empty(),
            _ => false,
        })
    }

    /// Strips typedefs and qualifiers down to a struct or union.
    fn aggregate_of(&self, mut t: Type) -> Option<Type> {
        for _ in 0..16 {
            match t {
                Type::Struct(_) | Type::Union(_) => return Some(t),
                Type::Typedef(_)
                | Type::Const(_)
                | Type::Volatile(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    t = self.btf.resolve_chained_type(t.as_btf_type()?).ok()?;
                }
                _ => return None,
            }
        }
        None
    }

    /// Finds `name` among the members of `agg`, looking through anonymous structs and unions.
    /// Returns (byte offset, member type).
    fn find_member(&self, agg: &Type, name: &str, depth: u32) -> Option<(u32, Type)> {
        let (Type::Struct(s) | Type::Union(s)) = agg else {
            return None;
        };
        for m in &s.members {
            let mname = self.btf.resolve_name(m).unwrap_or_default();
            if mname == name {
                let t = self.btf.resolve_chained_type(m).ok()?;
                return Some((m.bit_offset() / 8, t));
            }
            if mname.is_empty() && depth < 4 {
                let inner = self.aggregate_of(self.btf.resolve_chained_type(m).ok()?)?;
                if let Some((off, t)) = self.find_member(&inner, name, depth + 1) {
                    return Some((m.bit_offset() / 8 + off, t));
                }
            }
        }
        None
    }

    /// Byte offset of `path` (`"f_path.dentry"`) inside `struct root`.
    pub(crate) fn offset(&self, root: &str, path: &str) -> Option<u32> {
        let mut agg = self.struct_named(root)?;
        let mut total = 0u32;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (off, t) = self.find_member(&agg, part, 0)?;
            total += off;
            if i + 1 < parts.len() {
                agg = self.aggregate_of(t)?;
            }
        }
        Some(total)
    }

    /// All offsets of [`KernelOffsets`]; members that are missing stay [`NO_OFFSET`] unless the
    /// capture cannot work without them.
    pub(crate) fn kernel_offsets(&self) -> Result<KernelOffsets, OffsetError> {
        let o = |root: &str, path: &str| self.offset(root, path).unwrap_or(NO_OFFSET);
        let mut k = KernelOffsets::unset();
        k.task_real_parent = o("task_struct", "real_parent");
        k.task_group_leader = o("task_struct", "group_leader");
        k.task_pid = o("task_struct", "pid");
        k.task_tgid = o("task_struct", "tgid");
        k.task_start_boottime = o("task_struct", "start_boottime");
        k.task_nsproxy = o("task_struct", "nsproxy");
        k.task_files = o("task_struct", "files");
        k.task_mm = o("task_struct", "mm");
        k.task_exit_code = o("task_struct", "exit_code");
        k.nsproxy_mnt_ns = o("nsproxy", "mnt_ns");
        k.nsproxy_net_ns = o("nsproxy", "net_ns");
        k.mnt_ns_inum = o("mnt_namespace", "ns.inum");
        k.net_ns_inum = o("net", "ns.inum");
        k.files_fdt = o("files_struct", "fdt");
        k.fdt_max_fds = o("fdtable", "max_fds");
        k.fdt_fd = o("fdtable", "fd");
        k.file_inode = o("file", "f_inode");
        k.file_flags = o("file", "f_flags");
        k.file_dentry = o("file", "f_path.dentry");
        k.inode_ino = o("inode", "i_ino");
        k.inode_sb = o("inode", "i_sb");
        k.sb_dev = o("super_block", "s_dev");
        k.sb_magic = o("super_block", "s_magic");
        k.dentry_name = o("dentry", "d_name.name");
        k.dentry_parent = o("dentry", "d_parent");
        k.dentry_hash_len = o("dentry", "d_name.hash_len");
        k.dentry_inode = o("dentry", "d_inode");
        k.mm_arg_start = o("mm_struct", "arg_start");
        k.mm_arg_end = o("mm_struct", "arg_end");
        k.sock_err = o("sock", "sk_err");
        k.sock_net = o("sock", "__sk_common.skc_net.net");
        k.io_kiocb_fd = o("io_kiocb", "cqe.fd");
        k.io_kiocb_flags = o("io_kiocb", "flags");
        k.regs_arg0 = o("pt_regs", "di");
        k.regs_arg1 = o("pt_regs", "si");
        k.files_fdtab = o("files_struct", "fdtab");
        k.dentry_shortname = o("dentry", "d_shortname.words");
        k.inet_sport = o("inet_sock", "inet_sport");
        k.kiocb_filp = o("kiocb", "ki_filp");
        // Without these the credential filter cannot identify a file: refuse rather than run
        // blind while claiming coverage.
        for (name, v) in [
            ("task_struct.files", k.task_files),
            ("files_struct.fdt", k.files_fdt),
            ("fdtable.fd", k.fdt_fd),
            ("file.f_inode", k.file_inode),
            ("inode.i_ino", k.inode_ino),
            ("inode.i_sb", k.inode_sb),
            ("super_block.s_dev", k.sb_dev),
            ("task_struct.tgid", k.task_tgid),
        ] {
            if v == NO_OFFSET {
                return Err(OffsetError::Required(name.to_string()));
            }
        }
        Ok(k)
    }
}

/// An object file's bytes in 8-byte-aligned storage: the ELF reader (in aya and here) reads
/// headers in place and needs them aligned, as `include_bytes_aligned!` provides for the
/// embedded original.
pub(crate) struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    /// Copies `bytes`.
    pub(crate) fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_ne_bytes(b);
        }
        Self {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `words` owns at least `len` initialised bytes; u8 has no alignment or
        // validity requirements, and the borrow ties the slice to `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with the unique borrow of `self`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// This kernel's values for the object's placeholders.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectTable {
    /// Member placeholder → offset.
    pub(crate) members: Vec<(i16, i16)>,
    /// BTF id of the `bpf_rdonly_cast` kfunc (6.2+); `None` where the kernel lacks it: the
    /// casts are patched into plain moves the programs never reach (`KernelOffsets::has_cast`).
    pub(crate) rdonly_cast: Option<u32>,
    /// Type placeholder → BTF id.
    pub(crate) types: Vec<(i32, u32)>,
}

/// The object with its direct loads patched, and how many instructions were rewritten.
pub(crate) struct PatchedObject {
    /// The patched object.
    pub(crate) object: AlignedObject,
    /// Instructions rewritten.
    pub(crate) patched: usize,
    /// True when the casts are real `bpf_rdonly_cast` calls (see [`DirectTable::rdonly_cast`]).
    pub(crate) casts: bool,
}

const BPF_LDX_MEM: [u8; 4] = [0x61, 0x69, 0x71, 0x79];
const BPF_LD_IMM64: u8 = 0x18;
const BPF_CALL: u8 = 0x85;
const BPF_MOV64_IMM: u8 = 0xb7;
/// `mov64 dst, src` (register to register).
const BPF_MOV64_REG: u8 = 0xbf;
/// `src_reg` of a call to a kernel function (kfunc) whose BTF id is the immediate.
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;
const SHF_EXECINSTR: u64 = 0x4;

impl BtfResolver {
    /// This kernel's value for every [`direct`] placeholder, or why one cannot be had (a
    /// member this kernel lacks, or one beyond the 16-bit reach of an instruction offset).
    pub(crate) fn direct_table(&self) -> Result<DirectTable, OffsetError> {
        let members = self.direct_offsets()?;
        let id_of = |name: &str, want: fn(&Type) -> bool| -> Result<u32, OffsetError> {
            let ids = self
                .btf
                .resolve_ids_by_name(name)
                .map_err(|e| OffsetError::Direct(format!("BTF lookup of `{name}`: {e}")))?;
            ids.into_iter()
                .find(|id| self.btf.resolve_type_by_id(*id).is_ok_and(|t| want(&t)))
                .ok_or_else(|| OffsetError::Direct(format!("no BTF type `{name}`")))
        };
        let rdonly_cast = id_of("bpf_rdonly_cast", |t| matches!(t, Type::Func(_))).ok();
        let mut types = Vec::new();
        for (placeholder, name) in direct::TYPES {
            let id = id_of(
                name,
                |t| matches!(t, Type::Struct(s) if !s.members.is_empty()),
            )?;
            types.push((*placeholder, id));
        }
        Ok(DirectTable {
            members,
            rdonly_cast,
            types,
        })
    }

    /// Member offsets of [`Self::direct_table`].
    pub(crate) fn direct_offsets(&self) -> Result<Vec<(i16, i16)>, OffsetError> {
        let fit = |what: String, off: Option<u32>| -> Result<i16, OffsetError> {
            let off = off.ok_or_else(|| OffsetError::Direct(format!("no member `{what}`")))?;
            i16::try_from(off).map_err(|_| {
                OffsetError::Direct(format!("`{what}` at {off} is beyond an instruction offset"))
            })
        };
        let mut table = Vec::with_capacity(direct::MEMBERS.len() + direct::FD_SLOTS);
        for (id, root, path) in direct::MEMBERS {
            table.push((*id, fit(format!("{root}.{path}"), self.offset(root, path))?));
        }
        for (id, root, path, plus) in direct::MEMBER_TAILS {
            let off = self.offset(root, path).map(|o| o + plus);
            table.push((*id, fit(format!("{root}.{path}+{plus}"), off)?));
        }
        // Optional: unreachable in the programs when absent (`dentry_shortname` unset).
        let words = self.offset("dentry", "d_shortname.words");
        for (k, p) in direct::DENTRY_WORDS.iter().enumerate() {
            let off = words.map(|o| o + 8 * k as u32).unwrap_or(0);
            table.push((
                *p,
                fit(format!("dentry.d_shortname.words[{k}]"), Some(off))?,
            ));
        }
        let slots = self.offset("files_struct", "fd_array");
        for k in 0..direct::FD_SLOTS as u32 {
            let off = slots.map(|o| o + 8 * k);
            table.push((
                direct::FD_SLOT_BASE + k as i16,
                fit(format!("files_struct.fd_array[{k}]"), off)?,
            ));
        }
        Ok(table)
    }

    /// Copies `object` (an eBPF ELF) and rewrites the offset of every load whose offset is a
    /// [`direct`] placeholder with this kernel's member offset.
    pub(crate) fn patch_direct_loads(&self, object: &[u8]) -> Result<PatchedObject, OffsetError> {
        let table = self.direct_table()?;
        patch_loads(object, &table)
    }
}

/// Rewrites the placeholders in the executable sections of `object` according to `table`:
/// offsets of `ldx` instructions, and `mov r2, TYPE; call RDONLY_CAST` pairs into kfunc calls
/// with BTF ids — or, on a kernel without the kfunc, into `r0 = r1`: the verifier resolves
/// every kfunc call up front, even on a branch it will prune, so the call cannot stay. Every
/// placeholder found must be in the table.
pub(crate) fn patch_loads(
    object: &[u8],
    table: &DirectTable,
) -> Result<PatchedObject, OffsetError> {
    let bad = |m: String| OffsetError::Direct(m);
    let file = object::File::parse(object).map_err(|e| bad(format!("eBPF object: {e}")))?;
    let mut ranges = Vec::new();
    for sec in file.sections() {
        let SectionFlags::Elf { sh_flags } = sec.flags() else {
            continue;
        };
        if sh_flags & SHF_EXECINSTR == 0 {
            continue;
        }
        if let Some((start, size)) = sec.file_range() {
            ranges.push((sec.name().unwrap_or("?").to_string(), start, size));
        }
    }
    let mut out = AlignedObject::new(object);
    let bytes = out.bytes_mut();
    let mut patched = 0;
    for (name, start, size) in ranges {
        let (start, size) = (start as usize, size as usize);
        let Some(code) = bytes.get_mut(start..start + size) else {
            return Err(bad(format!("section {name} lies outside the object")));
        };
        let mut i = 0;
        while i + 8 <= code.len() {
            let op = code[i];
            if op == BPF_LD_IMM64 {
                // Two slots; the second carries the upper half of the immediate.
                i += 16;
                continue;
            }
            if BPF_LDX_MEM.contains(&op) {
                let off = i16::from_le_bytes([code[i + 2], code[i + 3]]);
                if (direct::BASE..direct::END).contains(&off) {
                    let Some(&(_, real)) = table.members.iter().find(|(p, _)| *p == off) else {
                        return Err(bad(format!(
                            "{name}+{i}: unknown placeholder {off:#x} (object and agent disagree)"
                        )));
                    };
                    code[i + 2..i + 4].copy_from_slice(&real.to_le_bytes());
                    patched += 1;
                }
            }
            let imm = |c: &[u8], at: usize| {
                i32::from_le_bytes([c[at + 4], c[at + 5], c[at + 6], c[at + 7]])
            };
            if op == BPF_CALL && code[i + 1] == 0 && imm(code, i) == direct::KFUNC_RDONLY_CAST {
                // The type argument is set by the instruction just before (see `cast!`).
                let ty = if i >= 8 && code[i - 8] == BPF_MOV64_IMM && code[i - 7] == 2 {
                    let t = imm(code, i - 8);
                    table.types.iter().find(|(p, _)| *p == t).map(|(_, id)| *id)
                } else {
                    None
                };
                let Some(ty) = ty else {
                    return Err(bad(format!(
                        "{name}+{i}: a cast without a known type placeholder before it"
                    )));
                };
                match table.rdonly_cast {
                    Some(kfunc) => {
                        code[i - 4..i].copy_from_slice(&ty.to_le_bytes());
                        code[i + 1] = BPF_PSEUDO_KFUNC_CALL << 4;
                        code[i + 4..i + 8].copy_from_slice(&kfunc.to_le_bytes());
                    }
                    None => {
                        // r0 = r1 (src register in the high nibble), no offset, no immediate.
                        code[i..i + 8].copy_from_slice(&[BPF_MOV64_REG, 1 << 4, 0, 0, 0, 0, 0, 0]);
                    }
                }
                patched += 2;
            }
            i += 8;
        }
    }
    if patched == 0 {
        return Err(bad("the object has no placeholder loads".into()));
    }
    Ok(PatchedObject {
        object: out,
        patched,
        casts: table.rdonly_cast.is_some(),
    })
}

/// Fault injection for tests of the degraded paths: a copy of `object` whose program `name`
/// starts by reading an uninitialised register, which every verifier refuses
/// (`R9 !read_ok`). Never used by the agent outside tests.
pub(crate) fn poison_program(object: &[u8], name: &str) -> Result<AlignedObject, OffsetError> {
    use object::ObjectSymbol as _;
    let bad = |m: String| OffsetError::Direct(m);
    let file = object::File::parse(object).map_err(|e| bad(format!("eBPF object: {e}")))?;
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .ok_or_else(|| bad(format!("no program {name}")))?;
    let sec = sym
        .section_index()
        .and_then(|i| file.section_by_index(i).ok())
        .ok_or_else(|| bad(format!("{name} has no section")))?;
    let (start, _) = sec
        .file_range()
        .ok_or_else(|| bad(format!("{name}: section without data")))?;
    let at = usize::try_from(start + sym.address()).map_err(|e| bad(e.to_string()))?;
    let mut out = AlignedObject::new(object);
    // r0 = *(u64 *)(r9 + 0)
    out.bytes_mut()
        .get_mut(at..at + 8)
        .ok_or_else(|| bad(format!("{name} lies outside the object")))?
        .copy_from_slice(&[0x79, 0x90, 0, 0, 0, 0, 0, 0]);
    Ok(out)
}

/// One tracepoint's `format` file, parsed.
#[derive(Debug, Default, Clone)]
pub(crate) struct TracepointFormat {
    fields: Vec<(String, u32)>,
}

impl TracepointFormat {
    /// Parses the text of a `format` file.
    pub(crate) fn parse(text: &str) -> Self {
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = "";
            let mut offset = None;
            for part in rest.split(';') {
                let part = part.trim();
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.trim().parse::<u32>().ok();
                } else if !part.contains(':') && decl.is_empty() {
                    decl = part;
                }
            }
            // The name is the last identifier of the declaration, without an array suffix.
            let name = decl
                .split_whitespace()
                .last()
                .unwrap_or("")
                .split('[')
                .next()
                .unwrap_or("")
                .to_string();
            if let (false, Some(off)) = (name.is_empty(), offset) {
                fields.push((name, off));
            }
        }
        Self { fields }
    }

    /// Offset of `name`, or [`NO_OFFSET`].
    pub(crate) fn offset(&self, name: &str) -> u32 {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| *o)
            .unwrap_or(NO_OFFSET)
    }
}

/// Reads the `format` of `category/name` under a mounted tracefs; empty when absent.
pub(crate) fn read_format(tracefs: &Path, category: &str, name: &str) -> TracepointFormat {
    let p = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    std::fs::read_to_string(p)
        .map(|t| TracepointFormat::parse(&t))
        .unwrap_or_default()
}

/// All offsets of [`TracepointOffsets`] from tracefs.
pub fn tracepoint_offsets(tracefs: &Path) -> TracepointOffsets {
    let mut t = TracepointOffsets::unset();
    let exit = read_format(tracefs, "sched", "sched_process_exit");
    t.exit_group_dead = exit.offset("group_dead");
    t.exec_filename = read_format(tracefs, "sched", "sched_process_exec").offset("filename");
    let iss = read_format(tracefs, "sock", "inet_sock_set_state");
    t.iss_skaddr = iss.offset("skaddr");
    t.iss_oldstate = iss.offset("oldstate");
    t.iss_newstate = iss.offset("newstate");
    t.iss_sport = iss.offset("sport");
    t.iss_dport = iss.offset("dport");
    t.iss_family = iss.offset("family");
    t.iss_protocol = iss.offset("protocol");
    t.iss_saddr = iss.offset("saddr");
    t.iss_daddr = iss.offset("daddr");
    t.iss_saddr_v6 = iss.offset("saddr_v6");
    t.iss_daddr_v6 = iss.offset("daddr_v6");
    // `io_uring_submit_sqe` before 6.2 (same fields; `flags` a u32, see the program).
    let mut sub = read_format(tracefs, "io_uring", "io_uring_submit_req");
    if sub.offset("req") == NO_OFFSET {
        sub = read_format(tracefs, "io_uring", "io_uring_submit_sqe");
    }
    t.iou_submit_req = sub.offset("req");
    t.iou_submit_opcode = sub.offset("opcode");
    // The program reads 8 bytes of flags; older kernels had a 4-byte field there.
    t.iou_submit_flags = sub.offset("flags");
    let comp = read_format(tracefs, "io_uring", "io_uring_complete");
    t.iou_complete_req = comp.offset("req");
    t.iou_complete_res = comp.offset("res");
    let fm = read_format(tracefs, "filemap", "mm_filemap_get_pages");
    t.filemap_ino = fm.offset("i_ino");
    t.filemap_dev = fm.offset("s_dev");
    t.fixed_layout = fixed_layout(&t);
    t
}

/// Which compiled-in layouts ([`tp_fixed`]) match the offsets read from tracefs.
pub(crate) fn fixed_layout(t: &TracepointOffsets) -> u32 {
    use detector_common::tp_fixed as f;
    let eq = |got: u32, want: usize| got as usize == want;
    let mut bits = 0;
    if eq(t.iss_skaddr, f::ISS_SKADDR)
        && eq(t.iss_oldstate, f::ISS_OLDSTATE)
        && eq(t.iss_newstate, f::ISS_NEWSTATE)
        && eq(t.iss_sport, f::ISS_SPORT)
        && eq(t.iss_dport, f::ISS_DPORT)
        && eq(t.iss_family, f::ISS_FAMILY)
        && eq(t.iss_protocol, f::ISS_PROTOCOL)
        && eq(t.iss_saddr, f::ISS_SADDR)
        && eq(t.iss_daddr, f::ISS_DADDR)
        && eq(t.iss_saddr_v6, f::ISS_SADDR_V6)
        && eq(t.iss_daddr_v6, f::ISS_DADDR_V6)
    {
        bits |= f::ISS;
    }
    if eq(t.filemap_ino, f::FILEMAP_INO) && eq(t.filemap_dev, f::FILEMAP_DEV) {
        bits |= f::FILEMAP;
    }
    if eq(t.iou_submit_req, f::IOU_SUBMIT_REQ)
        && eq(t.iou_submit_opcode, f::IOU_SUBMIT_OPCODE)
        && eq(t.iou_submit_flags, f::IOU_SUBMIT_FLAGS)
    {
        bits |= f::IOU_SUBMIT;
    }
    if eq(t.iou_complete_req, f::IOU_COMPLETE_REQ) && eq(t.iou_complete_res, f::IOU_COMPLETE_RES) {
        bits |= f::IOU_COMPLETE;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: inet_sock_set_state\nID: 1577\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\nprint fmt: \"x\"\n";

    #[test]
    fn parses_format_fields_including_arrays_and_data_loc() {
        let f = TracepointFormat::parse(FORMAT);
        assert_eq!(f.offset("common_type"), 0);
        assert_eq!(f.offset("skaddr"), 8);
        assert_eq!(f.offset("saddr_v6"), 40);
        assert_eq!(f.offset("filename"), 8);
        assert_eq!(f.offset("missing"), NO_OFFSET);
    }

    #[test]
    fn garbage_format_yields_no_fields() {
        let f = TracepointFormat::parse("field:;;;\nfield:int x;\toffset:zz;\n\u{0}\u{1}");
        assert_eq!(f.offset("x"), NO_OFFSET);
    }
}

#[cfg(test)]
mod live {
    #[test]
    #[ignore = "prints this kernel's offsets"]
    fn print_offsets() {
        let r = super::BtfResolver::open(std::path::Path::new("/sys/kernel/btf/vmlinux")).unwrap();
        println!("{:#?}", r.kernel_offsets().unwrap());
        println!(
            "file.f_op={:?} sb.s_magic={:?}",
            r.offset("file", "f_op"),
            r.offset("super_block", "s_magic")
        );
    }
}
