//! Language-neutral blueprint tests: a JSON scenario says what to drive a component through and
//! what must come out; [`Scenario::run`] drives a lease's whole life in a [`Harness`] and lists
//! every [`Difference`]. `drydock blueprint test SCENARIO.json` runs one, so an author in any
//! language tests a blueprint with nothing but its built component and a JSON file.
//!
//! ```json
//! {
//!   "component": "working_copy.wasm",
//!   "config": {"directory": "copies"},
//!   "lease": {"attributes": {"repository": "https://example.com/repo.git", "ref": "v1"}},
//!   "supply": {"host": "local:/tmp/hosts"},
//!   "execs": {"clone": {}, "checkout": {"stdout": "0123abc\n"}, "clean": {}, "remove": {}},
//!   "expect": {
//!     "hooks": ["allocate-resource", "activate-resource", "acquire-lease", "activate-lease",
//!               "release-lease", "destroy-resource"],
//!     "execs": ["clone", "checkout", "clean", "remove"],
//!     "lease_attributes": {"commit": "0123abc"},
//!     "logs": ["checked out 0123abc"]
//!   }
//! }
//! ```

use super::{Harness, Lifecycle};
use crate::domain::{Action, CommandInterface, ExecRequest, ExecResult};
use crate::grant::Grant;
use crate::plugin::Plugin;
use anyhow::Context as _;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The component, relative to the scenario file (the command line may name another).
    #[serde(default)]
    pub component: Option<PathBuf>,
    /// The blueprint's config.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Grants the interface is checked against, as with `blueprint add --grant`.
    #[serde(default)]
    pub grants: Vec<String>,
    /// The lease driven through its life.
    #[serde(default)]
    pub lease: LeaseSpec,
    /// Supporting leases served by resource type, each by a local directory: `local:/DIR`.
    #[serde(default)]
    pub supply: BTreeMap<String, String>,
    /// What each exec returns, by the id the blueprint gave it.
    #[serde(default)]
    pub execs: BTreeMap<String, CannedExec>,
    /// Run execs for real in the supplied directories instead of answering from `execs`.
    #[serde(default)]
    pub run_execs: bool,
    /// What must come out.
    #[serde(default)]
    pub expect: Expect,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// The lease a scenario requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSpec {
    /// Its resource type; the component's own by default.
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    /// Its attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// What one exec "did".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedExec {
    /// Its exit code: 0 if not given, `null` for a command killed or never started.
    #[serde(default = "success")]
    pub exit: Option<i32>,
    /// What it printed.
    #[serde(default)]
    pub stdout: String,
    /// What it printed on stderr.
    #[serde(default)]
    pub stderr: String,
}

fn success() -> Option<i32> {
    Some(0)
}

/// What a scenario expects; everything left out is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Text the lifecycle's failure must contain; without it, the lifecycle must complete.
    #[serde(default)]
    pub failure: Option<String>,
    /// The step hooks called, in order.
    #[serde(default)]
    pub hooks: Option<Vec<String>>,
    /// The execs asked for, in order: ids, or objects that also give `argv`, `cwd`, `lease_key`.
    #[serde(default)]
    pub execs: Option<Vec<ExpectedExec>>,
    /// Attributes the lease has at the end (others may be there too).
    #[serde(default)]
    pub lease_attributes: BTreeMap<String, String>,
    /// Attributes the resource has at the end (others may be there too).
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// Texts found in the logged lines, in this order (others may come between).
    #[serde(default)]
    pub logs: Vec<String>,
    /// The command interface the active lease gets, as JSON (`{"type": "local", "root": …}`).
    #[serde(default)]
    pub interface: Option<serde_json::Value>,
}

/// One exec a scenario expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ExpectedExec {
    /// Only its id.
    Id(String),
    /// Its id and, where given, its arguments, directory and supporting lease.
    Full {
        /// The id.
        id: String,
        /// The program and its arguments; `"*"` matches any one argument.
        #[serde(default)]
        argv: Option<Vec<String>>,
        /// The working directory.
        #[serde(default)]
        cwd: Option<String>,
        /// The supporting lease's key.
        #[serde(default)]
        lease_key: Option<String>,
    },
}

impl ExpectedExec {
    fn id(&self) -> &str {
        match self {
            ExpectedExec::Id(id) | ExpectedExec::Full { id, .. } => id,
        }
    }

    /// What differs between this and `got`, field by field.
    fn compare(&self, got: &ExecRequest, differences: &mut Vec<Difference>) {
        let ExpectedExec::Full {
            id,
            argv,
            cwd,
            lease_key,
        } = self
        else {
            return;
        };
        let matches = |want: &Vec<String>| {
            want.len() == got.argv.len()
                && want.iter().zip(&got.argv).all(|(w, g)| w == "*" || w == g)
        };
        if let Some(argv) = argv.as_ref().filter(|argv| !matches(argv)) {
            differ(differences, format!("exec {id:?} argv"), argv, &got.argv);
        }
        if cwd.is_some() {
            differ(differences, format!("exec {id:?} cwd"), cwd, &got.cwd);
        }
        if let Some(key) = lease_key {
            differ(
                differences,
                format!("exec {id:?} lease"),
                key,
                &got.lease_key,
            );
        }
    }
}

/// One way what came out is not what the scenario expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What was compared, such as `lease attribute "commit"`.
    pub what: String,
    /// What the scenario expects.
    pub want: String,
    /// What came out.
    pub got: String,
}

/// Records a difference when `want` and `got` differ, both shown as JSON.
fn differ<W: serde::Serialize + PartialEq<G>, G: serde::Serialize>(
    differences: &mut Vec<Difference>,
    what: String,
    want: &W,
    got: &G,
) {
    if want != got {
        differences.push(Difference {
            what,
            want: json(want),
            got: json(got),
        });
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("<{e}>"))
}

/// What running a scenario came to.
#[derive(Debug)]
pub struct Report {
    /// The lifecycle it drove.
    pub lifecycle: Lifecycle,
    /// Every difference from what it expects; empty when it passed.
    pub differences: Vec<Difference>,
}

impl Scenario {
    /// Reads a scenario file; the error names the file and, for bad JSON, where.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the scenario {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("the scenario {} is not valid", path.display()))
    }

    /// The component to run: `wasm` if given, else the scenario's `component`, relative to the
    /// directory of the scenario at `path`.
    pub fn component_path(&self, path: &Path, wasm: Option<&Path>) -> anyhow::Result<PathBuf> {
        match (wasm, &self.component) {
            (Some(wasm), _) => Ok(wasm.to_path_buf()),
            (None, Some(component)) => Ok(path.parent().unwrap_or(Path::new(".")).join(component)),
            (None, None) => anyhow::bail!(
                "the scenario {} names no `component`; give the .wasm with --wasm",
                path.display()
            ),
        }
    }

    /// Drives a lease of the scenario through its life on `plugin` and compares what came out.
    /// Runs calls on a runtime of its own: call it from synchronous code.
    pub fn run(&self, plugin: Plugin) -> anyhow::Result<Report> {
        let mut kit = Harness::new(plugin, &self.config.to_string())?;
        let grants: Vec<Grant> = self
            .grants
            .iter()
            .map(|text| text.parse().map_err(|why: String| anyhow::anyhow!(why)))
            .collect::<anyhow::Result<_>>()?;
        kit.grant(&grants);
        for (resource_type, target) in &self.supply {
            let root = target.strip_prefix("local:").with_context(|| {
                format!("supply {resource_type:?}: {target:?} is not local:/DIR")
            })?;
            let interface = CommandInterface::Local { root: root.into() };
            kit.supply(resource_type, interface)
                .with_context(|| format!("supply {resource_type:?}"))?;
        }
        let unanswered = Rc::new(RefCell::new(Vec::new()));
        if self.run_execs {
            kit.run_execs();
        } else {
            let (canned, unanswered) = (self.execs.clone(), unanswered.clone());
            kit.on_exec(move |request| answer(&canned, request, &unanswered));
        }
        let resource_type = match &self.lease.resource_type {
            Some(resource_type) => resource_type.clone(),
            None => kit.describe()?.resource_type,
        };
        let attributes = self
            .lease
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let lifecycle = kit.lifecycle(&resource_type, attributes);
        let mut differences: Vec<Difference> = unanswered
            .borrow()
            .iter()
            .map(|id| Difference {
                what: format!("exec {id:?}"),
                want: "a result in the scenario's `execs`".into(),
                got: "none: the exec failed as if it could not start".into(),
            })
            .collect();
        self.expect.compare(&kit, &lifecycle, &mut differences);
        Ok(Report {
            lifecycle,
            differences,
        })
    }
}

/// The canned result of `request`; one that has none fails as if it could not start.
fn answer(
    canned: &BTreeMap<String, CannedExec>,
    request: &ExecRequest,
    unanswered: &RefCell<Vec<String>>,
) -> ExecResult {
    match canned.get(&request.id) {
        Some(exec) => ExecResult {
            id: request.id.clone(),
            exit_code: exec.exit,
            stdout: exec.stdout.clone(),
            stderr: exec.stderr.clone(),
        },
        None => {
            let mut unanswered = unanswered.borrow_mut();
            if !unanswered.contains(&request.id) {
                unanswered.push(request.id.clone());
            }
            ExecResult {
                id: request.id.clone(),
                exit_code: None,
                stdout: String::new(),
                stderr: format!("the scenario gives no result for exec {:?}", request.id),
            }
        }
    }
}

impl Expect {
    fn compare(&self, kit: &Harness, lifecycle: &Lifecycle, differences: &mut Vec<Difference>) {
        match (&self.failure, &lifecycle.failure) {
            (None, None) => {}
            (Some(want), Some(got)) if got.contains(want.as_str()) => {}
            (want, got) => differences.push(Difference {
                what: "how the lifecycle ended".into(),
                want: want
                    .as_ref()
                    .map_or("complete".into(), |w| format!("a failure containing {w:?}")),
                got: got
                    .as_ref()
                    .map_or("complete".into(), |g| format!("stopped: {g}")),
            }),
        }
        if let Some(hooks) = &self.hooks {
            let called: Vec<&str> = lifecycle.calls.iter().map(|c| c.hook.as_str()).collect();
            differ(differences, "hooks called".into(), hooks, &called);
        }
        let steps = lifecycle.calls.iter().flat_map(|call| &call.steps);
        if let Some(execs) = &self.execs {
            let asked: Vec<ExecRequest> = steps.clone().flat_map(|step| step.execs()).collect();
            let want: Vec<&str> = execs.iter().map(ExpectedExec::id).collect();
            let got: Vec<&str> = asked.iter().map(|e| e.id.as_str()).collect();
            differ(differences, "execs asked for".into(), &want, &got);
            for (expected, got) in execs.iter().zip(&asked) {
                if expected.id() == got.id {
                    expected.compare(got, differences);
                }
            }
        }
        let objects = [
            ("lease", lifecycle.lease.as_deref(), &self.lease_attributes),
            (
                "resource",
                lifecycle.resource.as_deref(),
                &self.resource_attributes,
            ),
        ];
        for (kind, id, wanted) in objects {
            let attributes = match id {
                Some(id) if kind == "lease" => Some(&kit.lease(id).attributes),
                Some(id) => Some(&kit.resource(id).attributes),
                None => None,
            };
            for (key, want) in wanted {
                let got = attributes.and_then(|a| a.get(key));
                differ(
                    differences,
                    format!("{kind} attribute {key:?}"),
                    &Some(want),
                    &got,
                );
            }
        }
        let logged: Vec<&str> = steps
            .flat_map(|step| &step.actions)
            .filter_map(|action| match action {
                Action::Log(line) => Some(line.as_str()),
                _ => None,
            })
            .collect();
        let mut rest = logged.iter();
        for want in &self.logs {
            if !rest.any(|line| line.contains(want.as_str())) {
                differences.push(Difference {
                    what: format!("a log line containing {want:?} (in order)"),
                    want: "found".into(),
                    got: json(&logged),
                });
                break;
            }
        }
        if let Some(want) = &self.interface {
            let got = lifecycle.interface.as_ref().map(serde_json::to_value);
            let got = got.transpose().unwrap_or_default();
            differ(differences, "interface".into(), &Some(want), &got.as_ref());
        }
    }
}
