//! The ledger in memory: every credential, who used it, what it reached, how it changed. The
//! writer applies inputs here (pure: time comes from the inputs) and writes what changed to the
//! store in batches; `detector inventory` loads the same model from the store read-only, so
//! that the agent's `/inventory` and the command answer with the same code.
//!
//! Sizes are bounded per key (names per credential, programs per use, destinations per use),
//! and overall by the retention policy ([`Model::expire`], [`Model::shed`]); what detail is
//! dropped is counted on the credential (`dropped_uses`, `dropped_reach`) and in [`Dropped`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use smallvec::SmallVec;

use super::input::{Access, Actor, Contact};
use super::policy::Policy;

/// Row ids (SQLite rowids).
pub(crate) type Id = i64;

/// Other names a credential was reached by, kept per credential.
pub(crate) const MAX_NAMES: usize = 8;
/// (executable, parent executable) pairs kept per use.
pub(crate) const MAX_PROGRAMS: usize = 16;
/// Destinations kept per use.
pub(crate) const MAX_DESTINATIONS: usize = 256;
/// Changes (rotations) kept per credential.
pub(crate) const MAX_CHANGES: usize = 32;
/// How long before its use a connection by the same process still counts as reached with the
/// credential: clients such as ssh connect first and read the key to authenticate.
pub(crate) const REACH_LEAD_NS: u64 = 2_000_000_000;
/// Connections remembered per process for [`REACH_LEAD_NS`].
const LEAD_PER_PROCESS: usize = 32;

/// How the owner of a credential is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OwnerSource {
    /// identities.yaml.
    Declared,
    /// The home directory it is in.
    Home,
    /// The kubelet pod directory it is in (or the in-pod path).
    Pod,
}

impl OwnerSource {
    /// As stored.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OwnerSource::Declared => "declared",
            OwnerSource::Home => "home",
            OwnerSource::Pod => "pod",
        }
    }

    /// From the stored text.
    pub(crate) fn parse(s: &str) -> Option<OwnerSource> {
        Some(match s {
            "declared" => OwnerSource::Declared,
            "home" => OwnerSource::Home,
            "pod" => OwnerSource::Pod,
            _ => return None,
        })
    }
}

/// The last process that opened a credential for writing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Writer {
    /// When.
    pub(crate) ts: u64,
    /// Identity.
    pub(crate) identity: String,
    /// Executable.
    pub(crate) exe: String,
    /// Real uid.
    pub(crate) uid: u32,
}

/// One credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credential {
    /// Row id.
    pub(crate) id: Id,
    /// The watched path: the credential's name.
    pub(crate) path: String,
    /// Category.
    pub(crate) category: String,
    /// Device (kernel encoding).
    pub(crate) dev: u64,
    /// Inode.
    pub(crate) ino: u64,
    /// Other names it was reached by (hardlinks, relative names), bounded.
    pub(crate) names: Vec<String>,
    /// In the watch list now (false: deleted or no longer watched).
    pub(crate) present: bool,
    /// Owner: identity names (declared), `user:NAME` or `pod:UID` (derived).
    pub(crate) owner: Option<String>,
    /// How the owner is known.
    pub(crate) owner_source: Option<OwnerSource>,
    /// Who answers for it (identities.yaml `credentials:` contact).
    pub(crate) contact: Option<String>,
    /// Declared rotation policy (ns), overriding the category's.
    pub(crate) rotate_every: Option<u64>,
    /// Current keyed fingerprint (of what was last read).
    pub(crate) fingerprint: Option<String>,
    /// Last modification (ns).
    pub(crate) mtime: Option<u64>,
    /// First observed by the ledger.
    pub(crate) first_seen: u64,
    /// Last observed (a use, a write, the watch list).
    pub(crate) last_seen: u64,
    /// Last use.
    pub(crate) last_used: Option<u64>,
    /// Uses ever recorded (retention keeps this count).
    pub(crate) uses: u64,
    /// Opens for writing.
    pub(crate) writes: u64,
    /// The last writer.
    pub(crate) last_write: Option<Writer>,
    /// Rotations observed (content or inode changes).
    pub(crate) rotations: u64,
    /// Time of the last one.
    pub(crate) last_rotation: Option<u64>,
    /// Uses whose detail retention dropped (their count).
    pub(crate) dropped_uses: u64,
    /// Contacts whose detail retention dropped (their count).
    pub(crate) dropped_reach: u64,
}

/// First/last seen and a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// First.
    pub(crate) first_seen: u64,
    /// Last.
    pub(crate) last_seen: u64,
    /// How many.
    pub(crate) count: u64,
}

impl Stat {
    fn new(ts: u64) -> Stat {
        Stat {
            first_seen: ts,
            last_seen: ts,
            count: 0,
        }
    }

    fn hit(&mut self, ts: u64) {
        self.first_seen = self.first_seen.min(ts);
        self.last_seen = self.last_seen.max(ts);
        self.count += 1;
    }
}

/// Identity × credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// First/last use, count.
    pub(crate) stat: Stat,
    /// Whether the identity owns the credential (at its last use); `None`: unknown.
    pub(crate) owned: Option<bool>,
    /// Fingerprint it last read.
    pub(crate) fingerprint: Option<String>,
    /// Last process: pid, start, executable (program id), user, uid.
    pub(crate) last_tgid: u32,
    /// Start of that process.
    pub(crate) last_start: u64,
    /// Its executable.
    pub(crate) last_exe: Id,
    /// Its user name.
    pub(crate) last_user: Option<String>,
    /// Its uid.
    pub(crate) last_uid: u32,
}

/// Key of a (credential, identity, executable, parent executable) row.
pub(crate) type ProgramKey = (Id, Id, Id, Id);
/// (executable, parent) program ids of one use.
type ProgramList = SmallVec<[(Id, Id); 2]>;

/// Where a credential was seen: its path and what the kernel or the watch list said of it.
#[derive(Clone, Copy, Debug)]
struct Seen<'a> {
    path: &'a str,
    category: &'a str,
    dev: u64,
    ino: u64,
    mtime: Option<u64>,
}

impl<'a> Seen<'a> {
    fn of(a: &'a Access) -> Seen<'a> {
        Seen {
            path: &a.path,
            category: &a.category,
            dev: a.dev,
            ino: a.ino,
            mtime: a.mtime,
        }
    }
}

/// Key of a (credential, identity, destination) row.
pub(crate) type ReachKey = (Id, Id, Id);

/// A destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Destination {
    /// Address.
    pub(crate) addr: String,
    /// Port.
    pub(crate) port: u16,
    /// Service or resolved name, when known.
    pub(crate) name: Option<String>,
}

/// One fingerprint a credential had.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FingerprintSeen {
    /// First/last read with it.
    pub(crate) first_seen: u64,
    /// Last read with it.
    pub(crate) last_seen: u64,
    /// When the credential moved away from it (a rotation).
    pub(crate) superseded: Option<u64>,
}

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChangeKind {
    /// New content, same inode.
    Content,
    /// Another inode under the same path (atomic rename, delete and create).
    Replaced,
}

impl ChangeKind {
    /// As stored.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Content => "content",
            ChangeKind::Replaced => "replaced",
        }
    }

    /// From the stored text.
    pub(crate) fn parse(s: &str) -> Option<ChangeKind> {
        match s {
            "content" => Some(ChangeKind::Content),
            "replaced" => Some(ChangeKind::Replaced),
            _ => None,
        }
    }
}

/// A rotation observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Row id.
    pub(crate) id: Id,
    /// Credential.
    pub(crate) credential: Id,
    /// When it was observed.
    pub(crate) ts: u64,
    /// What changed.
    pub(crate) kind: ChangeKind,
    /// Fingerprint before, when known.
    pub(crate) old_fingerprint: Option<String>,
    /// Fingerprint after, once read.
    pub(crate) new_fingerprint: Option<String>,
    /// Inode before.
    pub(crate) old_ino: Option<u64>,
    /// Inode after.
    pub(crate) new_ino: Option<u64>,
    /// The process that opened it for writing since the previous observation, when seen.
    pub(crate) writer: Option<Writer>,
}

/// The findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// Used by two or more identities (the same path, or copies with the same content).
    Shared,
    /// Used by an identity that does not own it.
    NonOwner,
    /// In use while older than its rotation policy.
    PastRotation,
    /// Content a rotation replaced, still read (a copy left behind).
    StaleCopy,
    /// No use for the configured number of days: a retirement candidate.
    Unused,
}

impl FindingKind {
    /// Every kind.
    pub(crate) const ALL: [FindingKind; 5] = [
        FindingKind::Shared,
        FindingKind::NonOwner,
        FindingKind::PastRotation,
        FindingKind::StaleCopy,
        FindingKind::Unused,
    ];

    /// As stored and configured.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FindingKind::Shared => "shared",
            FindingKind::NonOwner => "non_owner",
            FindingKind::PastRotation => "past_rotation",
            FindingKind::StaleCopy => "stale_copy",
            FindingKind::Unused => "unused",
        }
    }

    /// From the stored text.
    pub(crate) fn parse(s: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Key of a finding: its kind, what it is about (a path or a fingerprint) and the identity
/// (empty when about the credential as a whole).
pub(crate) type FindingKey = (FindingKind, String, String);

/// When a finding was raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FindingSeen {
    /// Credential it was last about.
    pub(crate) credential: Id,
    /// First alert.
    pub(crate) first_raised: u64,
    /// Last alert.
    pub(crate) last_raised: u64,
    /// Alerts raised.
    pub(crate) raised: u64,
    /// Occurrences since the last alert (not alerted again yet).
    pub(crate) suppressed: u64,
}

/// A finding to alert on now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Kind.
    pub(crate) kind: FindingKind,
    /// The credential.
    pub(crate) credential: Id,
    /// The identity concerned, if one.
    pub(crate) identity: Option<String>,
    /// The process whose access raised it, if one.
    pub(crate) actor: Option<Actor>,
    /// When (input time).
    pub(crate) ts: u64,
    /// Occurrences not alerted since the previous alert of this finding.
    pub(crate) suppressed: u64,
    /// Facts for the alert (`age_days`, `copy_of`, …).
    pub(crate) facts: BTreeMap<String, String>,
}

/// Counts of detail dropped with whole credentials (retention).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Dropped {
    /// Credentials forgotten (gone from the host and older than the retention).
    pub(crate) credentials: u64,
    /// Their uses.
    pub(crate) uses: u64,
    /// Their contacts.
    pub(crate) reach: u64,
}

/// What changed since the last write to the store.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Credentials.
    pub(crate) credentials: HashSet<Id>,
    /// New identity names.
    pub(crate) identities: Vec<Id>,
    /// New program paths.
    pub(crate) programs: Vec<Id>,
    /// New destinations.
    pub(crate) destinations: Vec<Id>,
    /// Uses.
    pub(crate) usage: HashSet<(Id, Id)>,
    /// Programs of uses.
    pub(crate) programs_of_usage: HashSet<ProgramKey>,
    /// Reach.
    pub(crate) reach: HashSet<ReachKey>,
    /// Fingerprints.
    pub(crate) fingerprints: HashSet<(Id, String)>,
    /// Changes (new or updated).
    pub(crate) changes: HashSet<Id>,
    /// Findings.
    pub(crate) findings: HashSet<FindingKey>,
    /// The dropped counts.
    pub(crate) dropped: bool,
    /// Rows to delete (written before the upserts).
    pub(crate) deleted: Deleted,
}

impl Dirty {
    /// Rows waiting.
    pub(crate) fn len(&self) -> usize {
        self.credentials.len()
            + self.identities.len()
            + self.programs.len()
            + self.destinations.len()
            + self.usage.len()
            + self.programs_of_usage.len()
            + self.reach.len()
            + self.fingerprints.len()
            + self.changes.len()
            + self.findings.len()
            + usize::from(self.dropped)
            + self.deleted.len()
    }

    /// Nothing waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rows removed from the model, to remove from the store.
#[derive(Debug, Default)]
pub(crate) struct Deleted {
    /// Credentials (with their names).
    pub(crate) credentials: Vec<Id>,
    /// Uses.
    pub(crate) usage: Vec<(Id, Id)>,
    /// Programs of uses.
    pub(crate) programs_of_usage: Vec<ProgramKey>,
    /// Reach.
    pub(crate) reach: Vec<ReachKey>,
    /// Fingerprints.
    pub(crate) fingerprints: Vec<(Id, String)>,
    /// Changes.
    pub(crate) changes: Vec<Id>,
    /// Findings.
    pub(crate) findings: Vec<FindingKey>,
    /// Destinations no longer referenced.
    pub(crate) destinations: Vec<Id>,
}

impl Deleted {
    fn len(&self) -> usize {
        self.credentials.len()
            + self.usage.len()
            + self.programs_of_usage.len()
            + self.reach.len()
            + self.fingerprints.len()
            + self.changes.len()
            + self.findings.len()
            + self.destinations.len()
    }
}

/// A watched file as the watch list has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedCredential {
    /// Path.
    pub path: String,
    /// Category.
    pub category: String,
    /// Device (kernel encoding).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Modification time (ns).
    pub mtime: Option<u64>,
}

/// Interned strings with stable ids.
#[derive(Debug, Default)]
pub(crate) struct Names {
    by_id: HashMap<Id, String>,
    by_name: HashMap<String, Id>,
    next: Id,
}

impl Names {
    /// The id of `name`, and whether it is new.
    fn intern(&mut self, name: &str) -> (Id, bool) {
        if let Some(&id) = self.by_name.get(name) {
            return (id, false);
        }
        self.next = self.next.max(0) + 1;
        let id = self.next;
        self.by_id.insert(id, name.to_string());
        self.by_name.insert(name.to_string(), id);
        (id, true)
    }

    /// Adds a stored row.
    pub(crate) fn insert(&mut self, id: Id, name: String) {
        self.next = self.next.max(id);
        self.by_name.insert(name.clone(), id);
        self.by_id.insert(id, name);
    }

    /// The name of `id`.
    pub(crate) fn get(&self, id: Id) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// The id of `name`, if known.
    pub(crate) fn id(&self, name: &str) -> Option<Id> {
        self.by_name.get(name).copied()
    }
}

/// A recent use, waiting for the connections that follow it.
#[derive(Clone, Copy, Debug)]
struct RecentUse {
    credential: Id,
    ts: u64,
}

/// A recent connection, for a use that follows it within [`REACH_LEAD_NS`].
#[derive(Clone, Debug)]
struct RecentContact {
    ts: u64,
    addr: String,
    port: u16,
    name: Option<String>,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Model {
    /// Credentials by id.
    pub credentials: BTreeMap<Id, Credential>,
    by_path: HashMap<String, Id>,
    next_credential: Id,
    /// Identity names.
    pub(crate) identities: Names,
    /// Executable paths.
    pub(crate) programs: Names,
    /// Destinations by id.
    pub(crate) destinations: HashMap<Id, Destination>,
    destination_ids: HashMap<(String, u16), Id>,
    next_destination: Id,
    /// Uses.
    pub usage: HashMap<(Id, Id), Usage>,
    /// Programs of uses.
    pub programs_of_usage: HashMap<ProgramKey, Stat>,
    /// Reach.
    pub reach: HashMap<ReachKey, Stat>,
    /// Fingerprints per credential.
    pub fingerprints: HashMap<(Id, String), FingerprintSeen>,
    /// Changes by id.
    pub changes: BTreeMap<Id, Change>,
    next_change: Id,
    /// Findings raised.
    pub findings: HashMap<FindingKey, FindingSeen>,
    /// Counts of what retention dropped with whole credentials.
    pub(crate) dropped: Dropped,
    // Indexes (not stored).
    users_of: HashMap<Id, SmallVec<[Id; 4]>>,
    programs_by_usage: HashMap<(Id, Id), ProgramList>,
    reach_by_usage: HashMap<(Id, Id), Vec<Id>>,
    by_fingerprint: HashMap<String, SmallVec<[Id; 2]>>,
    fingerprints_by_credential: HashMap<Id, SmallVec<[String; 2]>>,
    changes_of: HashMap<Id, VecDeque<Id>>,
    // Reach windows (not stored): recent uses per (identity, tree), recent connections per
    // process.
    recent_uses: HashMap<(Id, u32), SmallVec<[RecentUse; 2]>>,
    recent_contacts: HashMap<(u32, u64), VecDeque<RecentContact>>,
    /// What the store does not have yet.
    pub(crate) dirty: Dirty,
    /// Latest input time.
    pub(crate) now: u64,
}

impl Model {
    /// An empty ledger.
    pub fn new() -> Model {
        Model::default()
    }

    /// The credential at `path`.
    pub(crate) fn by_path(&self, path: &str) -> Option<&Credential> {
        self.by_path
            .get(path)
            .and_then(|id| self.credentials.get(id))
    }

    /// Identities that used credential `id`.
    pub(crate) fn users_of(&self, id: Id) -> &[Id] {
        self.users_of.get(&id).map_or(&[], |v| v.as_slice())
    }

    /// (executable, parent) program ids of a use.
    pub(crate) fn programs_of(&self, credential: Id, identity: Id) -> &[(Id, Id)] {
        self.programs_by_usage
            .get(&(credential, identity))
            .map_or(&[], |v| v.as_slice())
    }

    /// Destination ids a use reached.
    pub(crate) fn reach_of(&self, credential: Id, identity: Id) -> &[Id] {
        self.reach_by_usage
            .get(&(credential, identity))
            .map_or(&[], |v| v.as_slice())
    }

    /// Changes of credential `id`, oldest first.
    pub(crate) fn changes_of(&self, id: Id) -> impl Iterator<Item = &Change> {
        self.changes_of
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|c| self.changes.get(c))
    }

    /// The fingerprints credential `id` had, with when.
    pub(crate) fn fingerprints_of(&self, id: Id) -> impl Iterator<Item = (&str, &FingerprintSeen)> {
        self.fingerprints_by_credential
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(move |fp| {
                self.fingerprints
                    .get(&(id, fp.clone()))
                    .map(|f| (fp.as_str(), f))
            })
    }

    fn add_fingerprint(&mut self, id: Id, fp: &str, f: FingerprintSeen) {
        index_fp(&mut self.by_fingerprint, fp, id);
        let l = self.fingerprints_by_credential.entry(id).or_default();
        if !l.iter().any(|x| x == fp) {
            l.push(fp.to_string());
        }
        self.fingerprints.insert((id, fp.to_string()), f);
    }

    fn remove_fingerprint(&mut self, k: (Id, String)) {
        if self.fingerprints.remove(&k).is_none() {
            return;
        }
        if let Some(l) = self.fingerprints_by_credential.get_mut(&k.0) {
            l.retain(|x| *x != k.1);
        }
        let current = self
            .credentials
            .get(&k.0)
            .is_some_and(|c| c.fingerprint.as_deref() == Some(k.1.as_str()));
        if !current {
            if let Some(v) = self.by_fingerprint.get_mut(&k.1) {
                v.retain(|x| *x != k.0);
                if v.is_empty() {
                    self.by_fingerprint.remove(&k.1);
                }
            }
        }
        self.dirty.fingerprints.remove(&k);
        self.dirty.deleted.fingerprints.push(k);
    }

    /// Credentials whose current fingerprint is `fp`.
    pub(crate) fn with_fingerprint(&self, fp: &str) -> Vec<Id> {
        self.by_fingerprint
            .get(fp)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|id| {
                        self.credentials
                            .get(id)
                            .is_some_and(|c| c.fingerprint.as_deref() == Some(fp))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Other credentials whose content was `fp` before a rotation (when it was superseded).
    pub(crate) fn superseded_elsewhere(&self, fp: &str, not: Id) -> Vec<(Id, u64)> {
        let mut out = Vec::new();
        for &id in self.by_fingerprint.get(fp).into_iter().flatten() {
            if id == not {
                continue;
            }
            if let Some(s) = self
                .fingerprints
                .get(&(id, fp.to_string()))
                .and_then(|f| f.superseded)
            {
                out.push((id, s));
            }
        }
        out
    }

    // ---- Loading (store → model) ----------------------------------------------------------

    /// Adds a stored credential.
    pub(crate) fn load_credential(&mut self, c: Credential) {
        self.next_credential = self.next_credential.max(c.id);
        self.by_path.insert(c.path.clone(), c.id);
        if let Some(fp) = &c.fingerprint {
            index_fp(&mut self.by_fingerprint, fp, c.id);
        }
        self.credentials.insert(c.id, c);
    }

    /// Adds a stored destination.
    pub(crate) fn load_destination(&mut self, id: Id, d: Destination) {
        self.next_destination = self.next_destination.max(id);
        self.destination_ids.insert((d.addr.clone(), d.port), id);
        self.destinations.insert(id, d);
    }

    /// Adds a stored use.
    pub(crate) fn load_usage(&mut self, credential: Id, identity: Id, u: Usage) {
        self.users_of.entry(credential).or_default().push(identity);
        self.usage.insert((credential, identity), u);
    }

    /// Adds a stored program row.
    pub(crate) fn load_program_of_usage(&mut self, k: ProgramKey, s: Stat) {
        self.programs_by_usage
            .entry((k.0, k.1))
            .or_default()
            .push((k.2, k.3));
        self.programs_of_usage.insert(k, s);
    }

    /// Adds a stored reach row.
    pub(crate) fn load_reach(&mut self, k: ReachKey, s: Stat) {
        self.reach_by_usage.entry((k.0, k.1)).or_default().push(k.2);
        self.reach.insert(k, s);
    }

    /// Adds a stored fingerprint row.
    pub(crate) fn load_fingerprint(&mut self, credential: Id, fp: String, f: FingerprintSeen) {
        self.add_fingerprint(credential, &fp, f);
    }

    /// Adds a stored change (in id order).
    pub(crate) fn load_change(&mut self, c: Change) {
        self.next_change = self.next_change.max(c.id);
        self.changes_of
            .entry(c.credential)
            .or_default()
            .push_back(c.id);
        self.changes.insert(c.id, c);
    }

    /// After loading: the current fingerprint of each credential was last read at its last use.
    pub(crate) fn settle_current_fingerprints(&mut self) {
        for c in self.credentials.values() {
            let (Some(fp), Some(used)) = (&c.fingerprint, c.last_used) else {
                continue;
            };
            if let Some(f) = self.fingerprints.get_mut(&(c.id, fp.clone())) {
                f.last_seen = f.last_seen.max(used);
            }
        }
    }

    /// Adds a stored finding.
    pub(crate) fn load_finding(&mut self, k: FindingKey, f: FindingSeen) {
        self.findings.insert(k, f);
    }

    // ---- Inputs ---------------------------------------------------------------------------

    fn tick_to(&mut self, ts: u64) {
        self.now = self.now.max(ts);
    }

    /// The credential at `path`, created when new; notes an inode change as a rotation.
    fn credential_at(&mut self, at: Seen<'_>, ts: u64, pol: &Policy) -> Id {
        let Seen {
            path,
            category,
            dev,
            ino,
            mtime,
        } = at;
        let id = match self.by_path.get(path) {
            Some(&id) => id,
            None => {
                self.next_credential += 1;
                let id = self.next_credential;
                let mut c = Credential {
                    id,
                    path: path.to_string(),
                    category: category.to_string(),
                    dev,
                    ino,
                    present: true,
                    mtime,
                    first_seen: ts,
                    last_seen: ts,
                    ..Default::default()
                };
                apply_owner(&mut c, pol);
                self.by_path.insert(path.to_string(), id);
                self.credentials.insert(id, c);
                self.dirty.credentials.insert(id);
                return id;
            }
        };
        let mut replaced = None;
        if let Some(c) = self.credentials.get_mut(&id) {
            if (c.dev, c.ino) != (dev, ino) {
                replaced = Some((c.ino, c.last_write.clone(), c.fingerprint.clone()));
                c.dev = dev;
                c.ino = ino;
            }
            if mtime.is_some() && mtime != c.mtime {
                c.mtime = mtime;
            }
            c.category = category.to_string();
            c.present = true;
            c.last_seen = c.last_seen.max(ts);
            self.dirty.credentials.insert(id);
        }
        if let Some((old_ino, writer, old_fp)) = replaced {
            self.record_change(Change {
                id: 0,
                credential: id,
                ts,
                kind: ChangeKind::Replaced,
                old_fingerprint: old_fp,
                new_fingerprint: None,
                old_ino: Some(old_ino),
                new_ino: Some(ino),
                writer,
            });
        }
        id
    }

    fn record_change(&mut self, mut ch: Change) {
        self.next_change += 1;
        ch.id = self.next_change;
        let (cid, ts) = (ch.credential, ch.ts);
        if let Some(c) = self.credentials.get_mut(&cid) {
            c.rotations += 1;
            c.last_rotation = Some(c.last_rotation.map_or(ts, |t| t.max(ts)));
            // The writer is attributed to one change only.
            c.last_write = None;
            self.dirty.credentials.insert(cid);
        }
        let list = self.changes_of.entry(cid).or_default();
        list.push_back(ch.id);
        if list.len() > MAX_CHANGES {
            if let Some(old) = list.pop_front() {
                self.changes.remove(&old);
                self.dirty.changes.remove(&old);
                self.dirty.deleted.changes.push(old);
            }
        }
        self.dirty.changes.insert(ch.id);
        self.changes.insert(ch.id, ch);
    }

    /// A new fingerprint read from credential `id`: a rotation when it had another one.
    fn fingerprint_read(&mut self, id: Id, fp: &str, ts: u64) {
        let old = self
            .credentials
            .get(&id)
            .and_then(|c| c.fingerprint.clone());
        if old.as_deref() != Some(fp) {
            if let Some(old) = &old {
                if let Some(f) = self.fingerprints.get_mut(&(id, old.clone())) {
                    f.superseded = Some(ts);
                    // Its last read: the credential's last use before this one.
                    if let Some(used) = self.credentials.get(&id).and_then(|c| c.last_used) {
                        f.last_seen = f.last_seen.max(used);
                    }
                    self.dirty.fingerprints.insert((id, old.clone()));
                }
                // An inode replacement observed since the last read is the same rotation: it
                // learns the new content.
                let last = self.changes_of.get(&id).and_then(|l| l.back()).copied();
                let pending = last
                    .and_then(|c| self.changes.get_mut(&c))
                    .filter(|c| c.kind == ChangeKind::Replaced && c.new_fingerprint.is_none());
                match pending {
                    Some(c) => {
                        c.new_fingerprint = Some(fp.to_string());
                        c.old_fingerprint.get_or_insert_with(|| old.clone());
                        self.dirty.changes.insert(c.id);
                    }
                    None => {
                        let writer = self.credentials.get(&id).and_then(|c| c.last_write.clone());
                        self.record_change(Change {
                            id: 0,
                            credential: id,
                            ts,
                            kind: ChangeKind::Content,
                            old_fingerprint: Some(old.clone()),
                            new_fingerprint: Some(fp.to_string()),
                            old_ino: None,
                            new_ino: None,
                            writer,
                        });
                    }
                }
            }
            if let Some(c) = self.credentials.get_mut(&id) {
                c.fingerprint = Some(fp.to_string());
                self.dirty.credentials.insert(id);
            }
            index_fp(&mut self.by_fingerprint, fp, id);
        }
        let key = (id, fp.to_string());
        if !self.fingerprints.contains_key(&key) {
            self.add_fingerprint(
                id,
                fp,
                FingerprintSeen {
                    first_seen: ts,
                    last_seen: ts,
                    superseded: None,
                },
            );
        }
        if let Some(f) = self.fingerprints.get_mut(&key) {
            f.last_seen = f.last_seen.max(ts);
            if old.as_deref() != Some(fp) {
                // Read again after a rollback: current once more.
                f.superseded = None;
            }
        }
        // A re-read of the current content changes only its last_seen, which the store
        // derives from the credential's last use: written when the fingerprint is new or
        // replaced, not on every read.
        if old.as_deref() != Some(fp) {
            self.dirty.fingerprints.insert(key);
        }
    }

    /// A credential read. Findings to alert on go to `out`.
    pub fn apply_use(&mut self, a: &Access, pol: &Policy, out: &mut Vec<Finding>) {
        self.tick_to(a.ts);
        let cid = self.credential_at(Seen::of(a), a.ts, pol);
        if let Some(n) = &a.name {
            if let Some(c) = self.credentials.get_mut(&cid) {
                if c.names.len() < MAX_NAMES && !c.names.contains(n) {
                    c.names.push(n.clone());
                }
            }
        }
        let fp_changed = a.fingerprint.is_some()
            && self.credentials.get(&cid).map(|c| &c.fingerprint) != Some(&a.fingerprint);
        if let Some(fp) = &a.fingerprint {
            self.fingerprint_read(cid, fp, a.ts);
        }
        let (iid, new_identity) = self.identities.intern(&a.actor.identity);
        if new_identity {
            self.dirty.identities.push(iid);
        }
        let exe = self.program(&a.actor.exe);
        let parent = match &a.actor.parent_exe {
            Some(p) => self.program(p),
            None => 0,
        };
        let owned = pol.identities.owns(&a.actor.identity, &a.path).or_else(|| {
            crate::enrich::identity::derived_owner(&a.path, &a.category).map(|o| {
                o.owns(
                    a.actor.user.as_deref(),
                    a.actor.uid,
                    a.actor.pod_uid.as_deref(),
                )
            })
        });
        let new_user = !self.usage.contains_key(&(cid, iid));
        let u = self.usage.entry((cid, iid)).or_insert_with(|| Usage {
            stat: Stat::new(a.ts),
            ..Default::default()
        });
        u.stat.hit(a.ts);
        u.owned = owned;
        if a.fingerprint.is_some() {
            u.fingerprint = a.fingerprint.clone();
        }
        u.last_tgid = a.actor.tgid;
        u.last_start = a.actor.start;
        u.last_exe = exe;
        u.last_user = a.actor.user.clone();
        u.last_uid = a.actor.uid;
        self.dirty.usage.insert((cid, iid));
        if new_user {
            self.users_of.entry(cid).or_default().push(iid);
        }
        if let Some(c) = self.credentials.get_mut(&cid) {
            c.uses += 1;
            c.last_used = Some(c.last_used.map_or(a.ts, |t| t.max(a.ts)));
        }
        let pk = (cid, iid, exe, parent);
        match self.programs_of_usage.get_mut(&pk) {
            Some(s) => {
                s.hit(a.ts);
                self.dirty.programs_of_usage.insert(pk);
            }
            None => {
                let list = self.programs_by_usage.entry((cid, iid)).or_default();
                if list.len() < MAX_PROGRAMS {
                    list.push((exe, parent));
                    let mut s = Stat::new(a.ts);
                    s.hit(a.ts);
                    self.programs_of_usage.insert(pk, s);
                    self.dirty.programs_of_usage.insert(pk);
                }
            }
        }
        // Reach: connections this process made just before (clients that connect, then
        // authenticate with the key), and those of its identity and tree that follow.
        let lead: Vec<RecentContact> = self
            .recent_contacts
            .get(&(a.actor.tgid, a.actor.start))
            .map(|q| {
                q.iter()
                    .filter(|c| c.ts <= a.ts && a.ts - c.ts <= REACH_LEAD_NS)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for c in lead {
            self.reached(cid, iid, &c.addr, c.port, c.name.as_deref(), c.ts, pol);
        }
        let recent = self.recent_uses.entry((iid, a.actor.tree)).or_default();
        match recent.iter_mut().find(|r| r.credential == cid) {
            Some(r) => r.ts = r.ts.max(a.ts),
            None => recent.push(RecentUse {
                credential: cid,
                ts: a.ts,
            }),
        }
        if pol.findings {
            self.judge_use(cid, iid, new_user || fp_changed, a, pol, out);
        }
    }

    fn program(&mut self, path: &str) -> Id {
        let (id, new) = self.programs.intern(path);
        if new {
            self.dirty.programs.push(id);
        }
        id
    }

    /// A credential opened for writing: who modified it (the next rotation observed names
    /// them).
    pub(crate) fn apply_write(&mut self, a: &Access, pol: &Policy) {
        self.tick_to(a.ts);
        let cid = self.credential_at(Seen::of(a), a.ts, pol);
        let writer = Writer {
            ts: a.ts,
            identity: a.actor.identity.clone(),
            exe: a.actor.exe.clone(),
            uid: a.actor.uid,
        };
        // Opened for writing under a new inode (created anew at the path): this process made
        // the replacement just recorded.
        let last = self.changes_of.get(&cid).and_then(|l| l.back()).copied();
        if let Some(ch) = last.and_then(|id| self.changes.get_mut(&id)) {
            if ch.ts == a.ts && ch.kind == ChangeKind::Replaced && ch.writer.is_none() {
                ch.writer = Some(writer.clone());
                self.dirty.changes.insert(ch.id);
            }
        }
        if let Some(c) = self.credentials.get_mut(&cid) {
            c.writes += 1;
            c.last_write = Some(writer);
        }
    }

    /// An outbound connection: reach for the uses of its identity and tree within the window.
    pub fn apply_contact(&mut self, c: &Contact, pol: &Policy) {
        self.tick_to(c.ts);
        let q = self.recent_contacts.entry((c.tgid, c.start)).or_default();
        if q.len() >= LEAD_PER_PROCESS {
            q.pop_front();
        }
        q.push_back(RecentContact {
            ts: c.ts,
            addr: c.addr.clone(),
            port: c.port,
            name: c.name.clone(),
        });
        let Some(iid) = self.identities.id(&c.identity) else {
            return;
        };
        let window = pol.reach_window_ns;
        let hits: SmallVec<[Id; 2]> = self
            .recent_uses
            .get(&(iid, c.tree))
            .map(|v| {
                v.iter()
                    .filter(|r| c.ts >= r.ts && c.ts - r.ts <= window)
                    .map(|r| r.credential)
                    .collect()
            })
            .unwrap_or_default();
        for cid in hits {
            self.reached(cid, iid, &c.addr, c.port, c.name.as_deref(), c.ts, pol);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reached(
        &mut self,
        cid: Id,
        iid: Id,
        addr: &str,
        port: u16,
        name: Option<&str>,
        ts: u64,
        pol: &Policy,
    ) {
        let did = match self.destination_ids.get(&(addr.to_string(), port)) {
            Some(&d) => d,
            None => {
                if self.reach_of(cid, iid).len() >= MAX_DESTINATIONS {
                    self.count_dropped_reach(cid);
                    return;
                }
                let name = name.map(str::to_string).or_else(|| {
                    addr.parse()
                        .ok()
                        .and_then(|ip| pol.identities.service_name(ip, port))
                        .map(str::to_string)
                });
                self.next_destination += 1;
                let d = self.next_destination;
                self.destination_ids.insert((addr.to_string(), port), d);
                self.destinations.insert(
                    d,
                    Destination {
                        addr: addr.to_string(),
                        port,
                        name,
                    },
                );
                self.dirty.destinations.push(d);
                d
            }
        };
        let k = (cid, iid, did);
        match self.reach.get_mut(&k) {
            Some(s) => s.hit(ts),
            None => {
                let list = self.reach_by_usage.entry((cid, iid)).or_default();
                if list.len() >= MAX_DESTINATIONS {
                    self.count_dropped_reach(cid);
                    return;
                }
                list.push(did);
                let mut s = Stat::new(ts);
                s.hit(ts);
                self.reach.insert(k, s);
            }
        }
        self.dirty.reach.insert(k);
    }

    fn count_dropped_reach(&mut self, cid: Id) {
        if let Some(c) = self.credentials.get_mut(&cid) {
            c.dropped_reach += 1;
            self.dirty.credentials.insert(cid);
        }
    }

    /// The watch list as it is now: new credentials, replaced inodes, credentials gone.
    pub fn apply_watched(&mut self, list: &[WatchedCredential], now: u64, pol: &Policy) {
        self.tick_to(now);
        let mut seen = HashSet::with_capacity(list.len());
        for w in list {
            let at = Seen {
                path: &w.path,
                category: &w.category,
                dev: w.dev,
                ino: w.ino,
                mtime: w.mtime,
            };
            let id = self.credential_at(at, now, pol);
            seen.insert(id);
        }
        for (id, c) in self.credentials.iter_mut() {
            if c.present && !seen.contains(id) {
                c.present = false;
                self.dirty.credentials.insert(*id);
            }
        }
    }

    /// identities.yaml changed (reload): owners, contacts and declared policies again.
    pub(crate) fn apply_policy(&mut self, pol: &Policy) {
        for (id, c) in self.credentials.iter_mut() {
            let before = (
                c.owner.clone(),
                c.owner_source,
                c.contact.clone(),
                c.rotate_every,
            );
            apply_owner(c, pol);
            if before
                != (
                    c.owner.clone(),
                    c.owner_source,
                    c.contact.clone(),
                    c.rotate_every,
                )
            {
                self.dirty.credentials.insert(*id);
            }
        }
    }

    // ---- Findings -------------------------------------------------------------------------

    /// Raises `key` unless it was alerted less than `repeat_after` ago (then counts it).
    fn raise(&mut self, key: FindingKey, credential: Id, ts: u64, pol: &Policy) -> Option<u64> {
        let f = self.findings.entry(key.clone()).or_default();
        self.dirty.findings.insert(key);
        f.credential = credential;
        if f.raised > 0 && ts.saturating_sub(f.last_raised) < pol.repeat_after_ns {
            f.suppressed += 1;
            return None;
        }
        if f.raised == 0 {
            f.first_raised = ts;
        }
        f.last_raised = ts;
        f.raised += 1;
        Some(std::mem::take(&mut f.suppressed))
    }

    /// Findings of a use; `joined`: the identity is new to the credential, or the credential's
    /// content is new (when sharing can start).
    fn judge_use(
        &mut self,
        cid: Id,
        iid: Id,
        joined: bool,
        a: &Access,
        pol: &Policy,
        out: &mut Vec<Finding>,
    ) {
        if !governed(&a.category) {
            return;
        }
        let identity = a.actor.identity.clone();
        let finding = |kind, suppressed, facts| Finding {
            kind,
            credential: cid,
            identity: Some(identity.clone()),
            actor: Some(a.actor.clone()),
            ts: a.ts,
            suppressed,
            facts,
        };
        // Used by an identity that does not own it.
        let owned = self.usage.get(&(cid, iid)).and_then(|u| u.owned);
        if owned == Some(false) && !pol.exempt_exe.contains(&a.actor.exe) {
            let key = (FindingKind::NonOwner, a.path.clone(), identity.clone());
            if let Some(s) = self.raise(key, cid, a.ts, pol) {
                let mut facts = BTreeMap::new();
                if let Some(o) = self.credentials.get(&cid).and_then(|c| c.owner.clone()) {
                    facts.insert("owner".into(), o);
                }
                out.push(finding(FindingKind::NonOwner, s, facts));
            }
        }
        // Shared: two or more identities read it, here or through a copy of its content. A
        // state: alerted for each identity that joins it (once), not on every use.
        if joined {
            let group = match &a.fingerprint {
                Some(fp) => self.with_fingerprint(fp),
                None => vec![cid],
            };
            // Sharing is of the content: after a rotation only identities that used the
            // current content count (one that read the old content and never the new is a
            // stale copy's concern, not sharing); a use without a fingerprint counts.
            let current = |g: Id, i: Id| match (&a.fingerprint, self.usage.get(&(g, i))) {
                (Some(fp), Some(u)) => u.fingerprint.as_ref().is_none_or(|f| f == fp),
                _ => true,
            };
            let mut ids: Vec<Id> = group
                .iter()
                .flat_map(|g| {
                    self.users_of(*g)
                        .iter()
                        .copied()
                        .filter(move |i| current(*g, *i))
                })
                .collect();
            ids.push(iid);
            ids.sort_unstable();
            ids.dedup();
            if ids.len() >= 2 {
                // Copies are one credential under several paths: their content names it.
                let subject = match (&a.fingerprint, group.len() > 1) {
                    (Some(fp), true) => fp.clone(),
                    _ => a.path.clone(),
                };
                let key = (FindingKind::Shared, subject, identity.clone());
                if let Some(s) = self.raise(key, cid, a.ts, pol) {
                    let mut facts = BTreeMap::new();
                    let names: Vec<&str> =
                        ids.iter().filter_map(|i| self.identities.get(*i)).collect();
                    facts.insert("identities".into(), names.join(", "));
                    facts.insert("identity_count".into(), ids.len().to_string());
                    let paths: Vec<&str> = group
                        .iter()
                        .filter_map(|g| self.credentials.get(g))
                        .map(|c| c.path.as_str())
                        .collect();
                    if paths.len() > 1 {
                        facts.insert("copies".into(), paths.join(", "));
                    }
                    out.push(finding(FindingKind::Shared, s, facts));
                }
            }
        }
        // In use while older than its rotation policy.
        if let Some(c) = self.credentials.get(&cid) {
            let since = c.mtime.or(c.last_rotation);
            let limit = c
                .rotate_every
                .unwrap_or_else(|| pol.rotation_ns(&c.category));
            if let Some(since) = since {
                let age = a.ts.saturating_sub(since);
                if age > limit {
                    let key = (FindingKind::PastRotation, a.path.clone(), String::new());
                    if let Some(s) = self.raise(key, cid, a.ts, pol) {
                        let mut facts = BTreeMap::new();
                        facts.insert("age_days".into(), (age / NS_PER_DAY).to_string());
                        facts.insert("policy_days".into(), (limit / NS_PER_DAY).to_string());
                        out.push(finding(FindingKind::PastRotation, s, facts));
                    }
                }
            }
        }
        // Content that a rotation replaced elsewhere, still read: a copy left behind.
        if let Some(fp) = &a.fingerprint {
            let old: Vec<(Id, u64)> = self
                .superseded_elsewhere(fp, cid)
                .into_iter()
                .filter(|(_, at)| *at <= a.ts)
                .collect();
            if let Some(&(orig, at)) = old.first() {
                let key = (FindingKind::StaleCopy, fp.clone(), identity.clone());
                if let Some(s) = self.raise(key, cid, a.ts, pol) {
                    let mut facts = BTreeMap::new();
                    if let Some(o) = self.credentials.get(&orig) {
                        facts.insert("copy_of".into(), o.path.clone());
                    }
                    facts.insert("rotated_at".into(), at.to_string());
                    out.push(finding(FindingKind::StaleCopy, s, facts));
                }
            }
        }
    }

    /// Credentials no workload used for `unused_after` (periodic: call with the current time).
    pub(crate) fn judge_unused(&mut self, now: u64, pol: &Policy, out: &mut Vec<Finding>) {
        self.tick_to(now);
        if !pol.findings {
            return;
        }
        let idle: Vec<(Id, String, u64)> = self
            .credentials
            .values()
            .filter(|c| c.present && governed(&c.category))
            .filter_map(|c| {
                let since = c.last_used.unwrap_or(c.first_seen);
                let idle = now.saturating_sub(since);
                (idle >= pol.unused_after_ns).then(|| (c.id, c.path.clone(), idle))
            })
            .collect();
        for (id, path, idle) in idle {
            let key = (FindingKind::Unused, path, String::new());
            // A state, not an occurrence: alerted again only once `repeat_after` has passed,
            // and nothing to write meanwhile.
            if self.findings.get(&key).is_some_and(|f| {
                f.raised > 0 && now.saturating_sub(f.last_raised) < pol.repeat_after_ns
            }) {
                continue;
            }
            if let Some(s) = self.raise(key, id, now, pol) {
                let mut facts = BTreeMap::new();
                facts.insert("idle_days".into(), (idle / NS_PER_DAY).to_string());
                let never = self
                    .credentials
                    .get(&id)
                    .is_some_and(|c| c.last_used.is_none());
                facts.insert("ever_used".into(), (!never).to_string());
                out.push(Finding {
                    kind: FindingKind::Unused,
                    credential: id,
                    identity: None,
                    actor: None,
                    ts: now,
                    suppressed: s,
                    facts,
                });
            }
        }
    }

    // ---- Windows and retention ------------------------------------------------------------

    /// Forgets reach windows older than `window` (and lead contacts older than
    /// [`REACH_LEAD_NS`]) as of `now`.
    pub(crate) fn prune_windows(&mut self, now: u64, window: u64) {
        self.recent_uses.retain(|_, v| {
            v.retain(|r| now.saturating_sub(r.ts) <= window);
            !v.is_empty()
        });
        self.recent_contacts.retain(|_, q| {
            while q
                .front()
                .is_some_and(|c| now.saturating_sub(c.ts) > REACH_LEAD_NS)
            {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// Time retention: drops detail last seen before `cutoff` (counts kept on the credential),
    /// and credentials gone from the host since before it (counted in [`Dropped`]). Returns
    /// the rows dropped.
    pub(crate) fn expire(&mut self, cutoff: u64) -> usize {
        let uses: Vec<(Id, Id)> = self
            .usage
            .iter()
            .filter(|(_, u)| u.stat.last_seen < cutoff)
            .map(|(k, _)| *k)
            .collect();
        let reach: Vec<ReachKey> = self
            .reach
            .iter()
            .filter(|(_, s)| s.last_seen < cutoff)
            .map(|(k, _)| *k)
            .collect();
        let programs: Vec<ProgramKey> = self
            .programs_of_usage
            .iter()
            .filter(|(_, s)| s.last_seen < cutoff)
            .map(|(k, _)| *k)
            .collect();
        let mut n = self.drop_detail(&uses, &reach, &programs);
        let fps: Vec<(Id, String)> = self
            .fingerprints
            .iter()
            .filter(|(_, f)| f.superseded.is_some() && f.last_seen < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for k in fps {
            self.remove_fingerprint(k);
            n += 1;
        }
        let changes: Vec<Id> = self
            .changes
            .values()
            .filter(|c| c.ts < cutoff)
            .map(|c| c.id)
            .collect();
        for id in changes {
            self.remove_change(id);
            n += 1;
        }
        let findings: Vec<FindingKey> = self
            .findings
            .iter()
            .filter(|(_, f)| f.last_raised < cutoff && f.suppressed == 0)
            .map(|(k, _)| k.clone())
            .collect();
        for k in findings {
            self.findings.remove(&k);
            self.dirty.findings.remove(&k);
            self.dirty.deleted.findings.push(k);
            n += 1;
        }
        let gone: Vec<Id> = self
            .credentials
            .values()
            .filter(|c| !c.present && c.last_seen < cutoff)
            .map(|c| c.id)
            .collect();
        for id in gone {
            n += self.forget_credential(id);
        }
        n + self.collect_destinations()
    }

    /// Size retention: drops the oldest `fraction` (0–1) of the detail rows (uses, their
    /// programs, reach), counts kept on the credentials. Returns the rows dropped.
    pub(crate) fn shed(&mut self, fraction: f64) -> usize {
        fn oldest<K: Copy + Ord>(rows: Vec<(u64, K)>, fraction: f64) -> Vec<K> {
            let mut rows = rows;
            let n = ((rows.len() as f64) * fraction).ceil() as usize;
            rows.sort_unstable();
            rows.truncate(n);
            rows.into_iter().map(|(_, k)| k).collect()
        }
        let fraction = fraction.clamp(0.0, 1.0);
        let uses = oldest(
            self.usage
                .iter()
                .map(|(k, u)| (u.stat.last_seen, *k))
                .collect(),
            fraction,
        );
        let reach = oldest(
            self.reach.iter().map(|(k, s)| (s.last_seen, *k)).collect(),
            fraction,
        );
        let programs = oldest(
            self.programs_of_usage
                .iter()
                .map(|(k, s)| (s.last_seen, *k))
                .collect(),
            fraction,
        );
        self.drop_detail(&uses, &reach, &programs) + self.collect_destinations()
    }

    fn drop_detail(
        &mut self,
        uses: &[(Id, Id)],
        reach: &[ReachKey],
        programs: &[ProgramKey],
    ) -> usize {
        let mut n = 0;
        for k in reach {
            if let Some(s) = self.reach.remove(k) {
                if let Some(l) = self.reach_by_usage.get_mut(&(k.0, k.1)) {
                    l.retain(|d| *d != k.2);
                }
                if let Some(c) = self.credentials.get_mut(&k.0) {
                    c.dropped_reach += s.count;
                    self.dirty.credentials.insert(k.0);
                }
                self.dirty.reach.remove(k);
                self.dirty.deleted.reach.push(*k);
                n += 1;
            }
        }
        for k in programs {
            if self.programs_of_usage.remove(k).is_some() {
                if let Some(l) = self.programs_by_usage.get_mut(&(k.0, k.1)) {
                    l.retain(|p| *p != (k.2, k.3));
                }
                self.dirty.programs_of_usage.remove(k);
                self.dirty.deleted.programs_of_usage.push(*k);
                n += 1;
            }
        }
        for k in uses {
            let Some(u) = self.usage.remove(k) else {
                continue;
            };
            if let Some(c) = self.credentials.get_mut(&k.0) {
                c.dropped_uses += u.stat.count;
                self.dirty.credentials.insert(k.0);
            }
            if let Some(l) = self.users_of.get_mut(&k.0) {
                l.retain(|i| *i != k.1);
            }
            for (exe, parent) in self.programs_by_usage.remove(k).unwrap_or_default() {
                let pk = (k.0, k.1, exe, parent);
                self.programs_of_usage.remove(&pk);
                self.dirty.programs_of_usage.remove(&pk);
                self.dirty.deleted.programs_of_usage.push(pk);
                n += 1;
            }
            for d in self.reach_by_usage.remove(k).unwrap_or_default() {
                let rk = (k.0, k.1, d);
                if let Some(s) = self.reach.remove(&rk) {
                    if let Some(c) = self.credentials.get_mut(&k.0) {
                        c.dropped_reach += s.count;
                    }
                }
                self.dirty.reach.remove(&rk);
                self.dirty.deleted.reach.push(rk);
                n += 1;
            }
            self.dirty.usage.remove(k);
            self.dirty.deleted.usage.push(*k);
            n += 1;
        }
        n
    }

    fn remove_change(&mut self, id: Id) {
        if let Some(c) = self.changes.remove(&id) {
            if let Some(l) = self.changes_of.get_mut(&c.credential) {
                l.retain(|x| *x != id);
            }
        }
        self.dirty.changes.remove(&id);
        self.dirty.deleted.changes.push(id);
    }

    /// Removes a credential and all its detail, counting it. Returns the rows dropped.
    fn forget_credential(&mut self, id: Id) -> usize {
        let users: Vec<Id> = self.users_of(id).to_vec();
        let uses: Vec<(Id, Id)> = users.iter().map(|i| (id, *i)).collect();
        let mut n = self.drop_detail(&uses, &[], &[]);
        let Some(c) = self.credentials.remove(&id) else {
            return n;
        };
        self.users_of.remove(&id);
        self.by_path.remove(&c.path);
        self.dropped.credentials += 1;
        self.dropped.uses += c.uses;
        self.dropped.reach += c.dropped_reach;
        self.dirty.dropped = true;
        let fps: Vec<(Id, String)> = self
            .fingerprints_of(id)
            .map(|(fp, _)| (id, fp.to_string()))
            .collect();
        for k in fps {
            self.remove_fingerprint(k);
            n += 1;
        }
        self.fingerprints_by_credential.remove(&id);
        if let Some(fp) = &c.fingerprint {
            if let Some(v) = self.by_fingerprint.get_mut(fp) {
                v.retain(|x| *x != id);
            }
        }
        let changes: Vec<Id> = self.changes_of(id).map(|c| c.id).collect();
        for ch in changes {
            self.remove_change(ch);
            n += 1;
        }
        self.changes_of.remove(&id);
        self.dirty.credentials.remove(&id);
        self.dirty.deleted.credentials.push(id);
        n + 1
    }

    /// Forgets destinations no reach row refers to.
    fn collect_destinations(&mut self) -> usize {
        let used: HashSet<Id> = self.reach.keys().map(|k| k.2).collect();
        let orphans: Vec<Id> = self
            .destinations
            .keys()
            .filter(|d| !used.contains(d))
            .copied()
            .collect();
        for d in &orphans {
            if let Some(x) = self.destinations.remove(d) {
                self.destination_ids.remove(&(x.addr, x.port));
            }
            self.dirty.destinations.retain(|y| y != d);
            self.dirty.deleted.destinations.push(*d);
        }
        orphans.len()
    }

    /// Rows held (what retention bounds).
    pub(crate) fn rows(&self) -> usize {
        self.credentials.len()
            + self.usage.len()
            + self.programs_of_usage.len()
            + self.reach.len()
            + self.fingerprints.len()
            + self.changes.len()
            + self.findings.len()
    }
}

/// Nanoseconds per day.
pub(crate) const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Whether findings apply to a category: `/etc/shadow` is the system's password database,
/// read by every program that authenticates users, neither shared nor rotated as a whole.
pub(crate) fn governed(category: &str) -> bool {
    category != "shadow"
}

fn index_fp(idx: &mut HashMap<String, SmallVec<[Id; 2]>>, fp: &str, id: Id) {
    let v = idx.entry(fp.to_string()).or_default();
    if !v.contains(&id) {
        v.push(id);
    }
}

/// Owner, contact and declared rotation policy of a credential from the policy.
fn apply_owner(c: &mut Credential, pol: &Policy) {
    let declared = pol.identities.declared_owners(&c.path);
    if !declared.is_empty() {
        c.owner = Some(declared.join(", "));
        c.owner_source = Some(OwnerSource::Declared);
    } else if let Some(o) = crate::enrich::identity::derived_owner(&c.path, &c.category) {
        c.owner = Some(o.principal());
        c.owner_source = Some(match o {
            crate::enrich::identity::DerivedOwner::User(_) => OwnerSource::Home,
            _ => OwnerSource::Pod,
        });
    } else {
        c.owner = None;
        c.owner_source = None;
    }
    let decl = pol.identities.credential_decl(&c.path);
    c.contact = decl.and_then(|d| d.contact.clone());
    c.rotate_every = decl
        .and_then(|d| d.rotate_every)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
}
