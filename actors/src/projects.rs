//! The projects file: the repositories the pool may build in, by name.
//!
//! A JSON object keyed by project name:
//!
//! ```json
//! { "spoonworks": { "path": "/root/spoonworks", "defaultBranch": "main" },
//!   "dash": { "path": "/root/dash", "defaultBranch": "main", "maxConcurrent": 2 } }
//! ```
//!
//! | field | required | default | rule |
//! |---|---|---|---|
//! | `path` | yes | — | absolute, an existing directory |
//! | `defaultBranch` | no | `main` | not empty |
//! | `maxConcurrent` | no | 1 | 1..=64 |
//!
//! Names are 1..=64 characters of `[A-Za-z0-9._-]`; any other field is an error. Every error
//! names the file, the project and the field, so the operator can fix it from the message alone.
//!
//! [`ProjectRegistry`] holds the file and its current contents, shared by the scheduler and
//! the front-end; [`ProjectRegistry::reload`] re-reads it and keeps the old contents when the
//! new ones are broken.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

/// The most builds one project may run at once.
const MAX_CONCURRENT_LIMIT: usize = 64;
/// The longest project name.
const MAX_NAME_LEN: usize = 64;

/// One project: a repository the pool may build in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Its name, the key in the projects file (what `claude_build` is given).
    pub name: String,
    /// The repository's directory (absolute).
    pub path: PathBuf,
    /// The branch builds start from when they name none.
    pub default_branch: String,
    /// How many builds may run in it at once.
    pub max_concurrent: usize,
}

/// The contents of a projects file, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projects {
    /// Keyed by name, so that listing is sorted.
    by_name: BTreeMap<String, Project>,
}

/// One project's entry as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProject {
    /// Checked by [`Projects::parse`]: absolute, an existing directory.
    path: String,
    /// `main` when absent.
    default_branch: Option<String>,
    /// 1 when absent.
    max_concurrent: Option<usize>,
}

/// Whether `name` is 1..=64 characters of `[A-Za-z0-9._-]`.
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Projects {
    /// Reads and parses the projects file at `file`.
    pub fn load(file: &Path) -> Result<Projects, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: cannot read the projects file: {e}", file.display()))?;
        Projects::parse(&text, &file.display().to_string())
    }

    /// Parses the text of a projects file; `file_name` starts every error message.
    pub fn parse(text: &str, file_name: &str) -> Result<Projects, String> {
        let entries: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| {
                format!("{file_name}: expected a JSON object keyed by project name: {e}")
            })?;
        let mut by_name = BTreeMap::new();
        for (name, value) in entries {
            let project = Self::parse_one(&name, value)
                .map_err(|e| format!("{file_name}: project {name:?}: {e}"))?;
            by_name.insert(name, project);
        }
        Ok(Projects { by_name })
    }

    /// One entry, checked; the error names the field but not the file or the project.
    fn parse_one(name: &str, value: serde_json::Value) -> Result<Project, String> {
        if !valid_name(name) {
            return Err(format!(
                "the name must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-'"
            ));
        }
        let raw: RawProject = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // An unknown field's message names it already.
            if path == "." || message.starts_with("unknown field") {
                message
            } else {
                format!("{path}: {message}")
            }
        })?;
        let path = PathBuf::from(&raw.path);
        if !path.is_absolute() {
            return Err(format!("path {:?} is not absolute", raw.path));
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("path {:?} is not a directory", raw.path)),
            Err(e) => return Err(format!("path {:?} does not exist: {e}", raw.path)),
        }
        let default_branch = raw.default_branch.unwrap_or_else(|| "main".to_owned());
        if default_branch.trim().is_empty() {
            return Err("defaultBranch must not be empty".to_owned());
        }
        let max_concurrent = raw.max_concurrent.unwrap_or(1);
        if !(1..=MAX_CONCURRENT_LIMIT).contains(&max_concurrent) {
            return Err(format!(
                "maxConcurrent {max_concurrent} is out of range (1 to {MAX_CONCURRENT_LIMIT})"
            ));
        }
        Ok(Project {
            name: name.to_owned(),
            path,
            default_branch,
            max_concurrent,
        })
    }

    /// The project called `name`.
    pub fn get(&self, name: &str) -> Option<&Project> {
        self.by_name.get(name)
    }

    /// All projects, sorted by name.
    pub fn list(&self) -> impl Iterator<Item = &Project> {
        self.by_name.values()
    }

    /// How many projects there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// What changed from `self` to `new`.
    fn diff(&self, new: &Projects) -> Reload {
        let mut reload = Reload::default();
        for (name, project) in &new.by_name {
            match self.by_name.get(name) {
                None => reload.added.push(name.clone()),
                Some(old) if old != project => reload.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        reload.removed = self
            .by_name
            .keys()
            .filter(|name| !new.by_name.contains_key(*name))
            .cloned()
            .collect();
        reload
    }
}

/// The projects file and its current contents; shared (`Arc`) by the scheduler and the
/// front-end.
#[derive(Debug)]
pub struct ProjectRegistry {
    /// Where the projects are read from; `None` when the pool was given no file.
    file: Option<PathBuf>,
    /// The contents last read successfully. Readers clone the `Arc` and never hold the lock
    /// across work, so a reload never waits on a build.
    current: RwLock<Arc<Projects>>,
}

/// What a reload changed, each list sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reload {
    /// Projects that are new.
    pub added: Vec<String>,
    /// Projects that are gone.
    pub removed: Vec<String>,
    /// Projects whose path, default branch or concurrency changed.
    pub changed: Vec<String>,
}

impl ProjectRegistry {
    /// Reads the projects file at `file`.
    pub fn load(file: &Path) -> Result<ProjectRegistry, String> {
        let projects = Projects::load(file)?;
        Ok(ProjectRegistry {
            file: Some(file.to_path_buf()),
            current: RwLock::new(Arc::new(projects)),
        })
    }

    /// No file: no projects.
    pub fn empty() -> ProjectRegistry {
        ProjectRegistry {
            file: None,
            current: RwLock::new(Arc::new(Projects::default())),
        }
    }

    /// The contents last read successfully.
    pub fn current(&self) -> Arc<Projects> {
        // A poisoned lock still holds a whole `Arc` (it is only ever swapped), so use it.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads the file: on success swaps in the new contents and returns what changed; on
    /// error keeps the old contents and returns the error (the caller logs it). Without a
    /// file there is nothing to reload and nothing changes.
    pub fn reload(&self) -> Result<Reload, String> {
        let Some(file) = &self.file else {
            return Ok(Reload::default());
        };
        let new = Projects::load(file)?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let reload = current.diff(&new);
        *current = Arc::new(new);
        Ok(reload)
    }

    /// The projects file, if the pool was given one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

#[cfg(test)]
mod tests;
