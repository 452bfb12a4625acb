//! The ledger as records: one [`CredentialRecord`] per credential with its whole story (owner,
//! fingerprints, rotations and who wrote them, every identity that used it with its programs,
//! and what it reached), the filters of `detector inventory`, and the inventory record the
//! agent exports to its sinks. The agent's `/inventory` and the command build them with the
//! same code from the same model.

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};

use super::model::{governed, ChangeKind, Credential, Id, Model, OwnerSource, Writer, NS_PER_DAY};
use super::policy::PolicySummary;

/// A fingerprint a credential had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FingerprintRecord {
    /// Keyed fingerprint (never the content).
    pub(crate) fingerprint: String,
    /// First read with it (ns).
    pub(crate) first_seen: u64,
    /// Last read with it.
    pub(crate) last_seen: u64,
    /// When a rotation replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) superseded: Option<u64>,
}

/// A rotation observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChangeRecord {
    /// When it was observed (ns).
    pub(crate) ts: u64,
    /// `content` (new content, same inode) or `replaced` (another inode at the path).
    pub(crate) kind: ChangeKind,
    /// Fingerprint before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) old_fingerprint: Option<String>,
    /// Fingerprint after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) new_fingerprint: Option<String>,
    /// Who opened it for writing before it changed, when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) writer: Option<Writer>,
}

/// An (executable, parent executable) pair that used the credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProgramRecord {
    /// Executable.
    pub(crate) exe: String,
    /// Parent's executable, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<String>,
    /// First use.
    pub(crate) first_seen: u64,
    /// Last use.
    pub(crate) last_seen: u64,
    /// Uses.
    pub(crate) count: u64,
}

/// The last process of an identity that used the credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastProcess {
    /// Process id.
    pub(crate) tgid: u32,
    /// Start (boot-time ns).
    pub(crate) start: u64,
    /// Executable.
    pub(crate) exe: String,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
    /// Real uid.
    pub(crate) uid: u32,
}

/// One identity's use of a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UsageRecord {
    /// Identity.
    pub(crate) identity: String,
    /// Owner of the credential? (`null`: unknown).
    pub(crate) owner: Option<bool>,
    /// First use (ns).
    pub(crate) first_seen: u64,
    /// Last use.
    pub(crate) last_seen: u64,
    /// Uses.
    pub(crate) count: u64,
    /// Fingerprint it last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fingerprint: Option<String>,
    /// The last process.
    pub(crate) last_process: LastProcess,
    /// Executables (with their parents) that used it.
    pub(crate) programs: Vec<ProgramRecord>,
}

/// A destination contacted after a use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReachRecord {
    /// The identity that used the credential and connected.
    pub(crate) identity: String,
    /// Address.
    pub(crate) addr: String,
    /// Port.
    pub(crate) port: u16,
    /// Name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// First contact (ns).
    pub(crate) first_seen: u64,
    /// Last contact.
    pub(crate) last_seen: u64,
    /// Contacts.
    pub(crate) count: u64,
}

/// What the findings say about a credential now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Flags {
    /// Used by two or more identities (here or through a copy of its content).
    pub(crate) shared: bool,
    /// No owner known.
    pub(crate) unowned: bool,
    /// Used by an identity that does not own it.
    pub(crate) non_owner: bool,
    /// In use while older than its rotation policy.
    pub(crate) past_rotation: bool,
    /// Not used for the retirement threshold.
    pub(crate) unused: bool,
    /// Holds content a rotation replaced elsewhere (a copy left behind), still read.
    pub(crate) stale_copy: bool,
}

/// A credential's whole story.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// Ledger id (`detector inventory show ID`).
    pub(crate) id: Id,
    /// Watched path.
    pub(crate) path: String,
    /// Category.
    pub(crate) category: String,
    /// Device.
    pub(crate) dev: u64,
    /// Inode.
    pub(crate) ino: u64,
    /// Other names it was reached by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) names: Vec<String>,
    /// On the host now.
    pub(crate) present: bool,
    /// Owner.
    pub(crate) owner: Option<String>,
    /// How the owner is known.
    pub(crate) owner_source: Option<OwnerSource>,
    /// Who answers for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) contact: Option<String>,
    /// Current keyed fingerprint.
    pub(crate) fingerprint: Option<String>,
    /// Fingerprint history, oldest first.
    pub(crate) fingerprints: Vec<FingerprintRecord>,
    /// Last modification (ns).
    pub(crate) mtime: Option<u64>,
    /// Days since the last modification or rotation.
    pub(crate) age_days: Option<u64>,
    /// Rotation policy (days).
    pub(crate) rotation_policy_days: u64,
    /// Rotations observed.
    pub(crate) rotations: u64,
    /// Last one (ns).
    pub(crate) last_rotation: Option<u64>,
    /// Rotations kept, oldest first.
    pub(crate) changes: Vec<ChangeRecord>,
    /// Opens for writing.
    pub(crate) writes: u64,
    /// Last writer not yet tied to a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_write: Option<Writer>,
    /// First observed (ns).
    pub(crate) first_seen: u64,
    /// Last observed.
    pub(crate) last_seen: u64,
    /// Last use.
    pub(crate) last_used: Option<u64>,
    /// Uses ever recorded.
    pub(crate) uses: u64,
    /// Who used it, most recent first.
    pub(crate) identities: Vec<UsageRecord>,
    /// What it reached, most recent first.
    pub(crate) reach: Vec<ReachRecord>,
    /// Findings.
    pub(crate) flags: Flags,
    /// Uses whose detail retention dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) dropped_uses: u64,
    /// Contacts whose detail retention dropped (or beyond the per-use bound).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) dropped_reach: u64,
    /// The instant the record describes (ns; not serialized: filters judge as of it).
    #[serde(skip)]
    pub(crate) reference_now: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The inventory record exported to the sinks: one credential, stamped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryRecord {
    /// Always `credential_inventory` (alerts have no such field).
    pub(crate) record: String,
    /// Unique id (receivers dedup on it).
    pub(crate) id: String,
    /// Host.
    pub(crate) host: String,
    /// When it was taken (ns).
    pub(crate) time: u64,
    /// The credential.
    pub(crate) credential: CredentialRecord,
}

impl InventoryRecord {
    /// Stamps a record.
    pub fn new(credential: CredentialRecord, host: &str, time: u64) -> InventoryRecord {
        InventoryRecord {
            record: "credential_inventory".into(),
            id: uuid::Uuid::new_v4().to_string(),
            host: host.to_string(),
            time,
            credential,
        }
    }
}

/// Filters of `detector inventory` (all given must hold).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Used by two or more identities.
    pub shared: bool,
    /// No owner known.
    pub unowned: bool,
    /// Used by a non-owner.
    pub non_owner: bool,
    /// Not rotated (nor modified) for at least this many days.
    pub stale_days: Option<u64>,
    /// Not used for at least this many days.
    pub unused_days: Option<u64>,
    /// Holding a copy of content a rotation replaced.
    pub stale_copy: bool,
    /// Used by an identity matching this glob.
    pub identity: Option<GlobMatcher>,
    /// Path (or another name) matching this glob.
    pub credential: Option<GlobMatcher>,
    /// Of this category.
    pub category: Option<String>,
    /// Include credentials no longer on the host.
    pub include_gone: bool,
}

/// A glob for `--identity`/`--credential`; a string that is no valid glob matches itself.
pub(crate) fn glob(s: &str) -> GlobMatcher {
    Glob::new(s)
        .or_else(|_| Glob::new(&globset::escape(s)))
        .map(|g| g.compile_matcher())
        .unwrap_or_else(|_| {
            // `escape` always yields a valid glob; an empty one matches nothing else.
            Glob::new("")
                .map(|g| g.compile_matcher())
                .unwrap_or_else(|_| unreachable!())
        })
}

impl Filter {
    /// Whether a record passes.
    pub(crate) fn matches(&self, r: &CredentialRecord) -> bool {
        (self.include_gone || r.present)
            && (!self.shared || r.flags.shared)
            && (!self.unowned || r.flags.unowned)
            && (!self.non_owner || r.flags.non_owner)
            && (!self.stale_copy || r.flags.stale_copy)
            && self
                .stale_days
                .is_none_or(|d| r.age_days.is_some_and(|a| a >= d))
            && self.unused_days.is_none_or(|d| idle_days(r) >= d)
            && self.category.as_ref().is_none_or(|c| *c == r.category)
            && self
                .identity
                .as_ref()
                .is_none_or(|g| r.identities.iter().any(|u| g.is_match(&u.identity)))
            && self
                .credential
                .as_ref()
                .is_none_or(|g| g.is_match(&r.path) || r.names.iter().any(|n| g.is_match(n)))
    }
}

/// Whole days without a use (since first observed when never used), as of the record.
fn idle_days(r: &CredentialRecord) -> u64 {
    r.reference_now
        .saturating_sub(r.last_used.unwrap_or(r.first_seen))
        / NS_PER_DAY
}

/// Builds records as of `now` (ns).
pub struct Records<'a> {
    m: &'a Model,
    pol: &'a PolicySummary,
    now: u64,
}

impl<'a> Records<'a> {
    /// Over `m` with the policy the agent recorded, as of `now`.
    pub fn new(m: &'a Model, pol: &'a PolicySummary, now: u64) -> Self {
        Records { m, pol, now }
    }

    /// Every credential passing `f`, in id order.
    pub fn list(&self, f: &Filter) -> Vec<CredentialRecord> {
        self.m
            .credentials
            .values()
            .map(|c| self.record(c))
            .filter(|r| f.matches(r))
            .collect()
    }

    /// One credential by id, path or another name it was reached by.
    pub(crate) fn show(&self, key: &str) -> Option<CredentialRecord> {
        let c = key
            .parse::<Id>()
            .ok()
            .and_then(|id| self.m.credentials.get(&id))
            .or_else(|| self.m.by_path(key))
            .or_else(|| {
                self.m
                    .credentials
                    .values()
                    .find(|c| c.names.iter().any(|n| n == key))
            })?;
        Some(self.record(c))
    }

    /// The record of credential `c`.
    pub(crate) fn record(&self, c: &Credential) -> CredentialRecord {
        let m = self.m;
        let mut identities: Vec<UsageRecord> = m
            .users_of(c.id)
            .iter()
            .filter_map(|&iid| {
                let u = m.usage.get(&(c.id, iid))?;
                let mut programs: Vec<ProgramRecord> = m
                    .programs_of(c.id, iid)
                    .iter()
                    .filter_map(|&(exe, parent)| {
                        let s = m.programs_of_usage.get(&(c.id, iid, exe, parent))?;
                        Some(ProgramRecord {
                            exe: m.programs.get(exe).unwrap_or_default().to_string(),
                            parent: m.programs.get(parent).map(str::to_string),
                            first_seen: s.first_seen,
                            last_seen: s.last_seen,
                            count: s.count,
                        })
                    })
                    .collect();
                programs.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
                Some(UsageRecord {
                    identity: m.identities.get(iid).unwrap_or_default().to_string(),
                    owner: u.owned,
                    first_seen: u.stat.first_seen,
                    last_seen: u.stat.last_seen,
                    count: u.stat.count,
                    fingerprint: u.fingerprint.clone(),
                    last_process: LastProcess {
                        tgid: u.last_tgid,
                        start: u.last_start,
                        exe: m.programs.get(u.last_exe).unwrap_or_default().to_string(),
                        user: u.last_user.clone(),
                        uid: u.last_uid,
                    },
                    programs,
                })
            })
            .collect();
        identities.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then_with(|| a.identity.cmp(&b.identity))
        });
        let mut reach: Vec<ReachRecord> = Vec::new();
        for &iid in m.users_of(c.id) {
            for &did in m.reach_of(c.id, iid) {
                let (Some(s), Some(d)) = (m.reach.get(&(c.id, iid, did)), m.destinations.get(&did))
                else {
                    continue;
                };
                reach.push(ReachRecord {
                    identity: m.identities.get(iid).unwrap_or_default().to_string(),
                    addr: d.addr.clone(),
                    port: d.port,
                    name: d.name.clone(),
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                    count: s.count,
                });
            }
        }
        reach.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then_with(|| (&a.addr, a.port).cmp(&(&b.addr, b.port)))
        });
        let mut fingerprints: Vec<FingerprintRecord> = m
            .fingerprints_of(c.id)
            .map(|(fp, f)| FingerprintRecord {
                fingerprint: fp.to_string(),
                first_seen: f.first_seen,
                last_seen: f.last_seen,
                superseded: f.superseded,
            })
            .collect();
        fingerprints.sort_by_key(|f| (f.first_seen, f.fingerprint.clone()));
        let changes: Vec<ChangeRecord> = m
            .changes_of(c.id)
            .map(|ch| ChangeRecord {
                ts: ch.ts,
                kind: ch.kind,
                old_fingerprint: ch.old_fingerprint.clone(),
                new_fingerprint: ch.new_fingerprint.clone(),
                writer: ch.writer.clone(),
            })
            .collect();
        let since = c.mtime.or(c.last_rotation);
        let age = since.map(|s| self.now.saturating_sub(s));
        let limit = c
            .rotate_every
            .unwrap_or_else(|| self.pol.rotation.rotation_ns(&c.category));
        let gov = governed(&c.category);
        // Shared through copies: identities reading the same content at other paths.
        let mut sharers: Vec<Id> = match &c.fingerprint {
            Some(fp) => m
                .with_fingerprint(fp)
                .iter()
                .flat_map(|g| m.users_of(*g).iter().copied())
                .collect(),
            None => m.users_of(c.id).to_vec(),
        };
        sharers.extend(m.users_of(c.id).iter().copied());
        sharers.sort_unstable();
        sharers.dedup();
        let stale_copy = identities.iter().any(|u| {
            u.fingerprint.as_deref().is_some_and(|fp| {
                m.superseded_elsewhere(fp, c.id)
                    .iter()
                    .any(|(_, at)| u.last_seen >= *at)
            })
        });
        let flags = Flags {
            shared: gov && sharers.len() >= 2,
            unowned: c.owner.is_none(),
            non_owner: gov
                && identities.iter().any(|u| {
                    u.owner == Some(false)
                        && u.programs
                            .iter()
                            .any(|p| !self.pol.exempt_exe.contains(&p.exe))
                }),
            past_rotation: gov
                && since.is_some_and(|s| {
                    age.is_some_and(|a| a > limit)
                        && c.last_used
                            .is_some_and(|used| used > s.saturating_add(limit))
                }),
            unused: gov
                && c.present
                && self.now.saturating_sub(c.last_used.unwrap_or(c.first_seen))
                    >= self.pol.unused_after_ns,
            stale_copy: gov && stale_copy,
        };
        CredentialRecord {
            id: c.id,
            path: c.path.clone(),
            category: c.category.clone(),
            dev: c.dev,
            ino: c.ino,
            names: c.names.clone(),
            present: c.present,
            owner: c.owner.clone(),
            owner_source: c.owner_source,
            contact: c.contact.clone(),
            fingerprint: c.fingerprint.clone(),
            fingerprints,
            mtime: c.mtime,
            age_days: age.map(|a| a / NS_PER_DAY),
            rotation_policy_days: limit / NS_PER_DAY,
            rotations: c.rotations,
            last_rotation: c.last_rotation,
            changes,
            writes: c.writes,
            last_write: c.last_write.clone(),
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            last_used: c.last_used,
            uses: c.uses,
            identities,
            reach,
            flags,
            dropped_uses: c.dropped_uses,
            dropped_reach: c.dropped_reach,
            reference_now: self.now,
        }
    }
}
