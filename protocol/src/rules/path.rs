//! Path patterns of the file-tool rules (`Edit(src/**)`, `Read(~/.ssh/**)`), gitignore-style,
//! and the lexical normalisation of the paths they are matched against.
//!
//! A pattern is parsed once into an anchor (the task's working directory, the filesystem
//! root, or the home directory, possibly moved up by leading `..`) and a sequence of
//! segments, with gitignore's readings made explicit:
//!
//! | written | segments | why |
//! |---|---|---|
//! | `*.env` (no `/` but a trailing one) | `**/*.env/**` | matches at any depth below the anchor |
//! | `src/*.rs` | `src/*.rs/**` | a matched directory covers everything inside it |
//! | `src/**` | `src/*/**` | a trailing `/**` is everything inside, not `src` itself |
//! | `docs/` | `**/docs/*/**` | a trailing `/` matches directories only: what is inside them |
//!
//! So matching is one question: do the pattern's segments match the path's segments below
//! the anchor, exactly.

use std::path::Path;

use super::RuleProblem;
use super::glob::{self, Tok};

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PathPattern {
    /// The directory the segments are read from.
    anchor: Anchor,
    /// How many leading `..` move the anchor up.
    up: usize,
    /// Never empty; always ends with [`Seg::AnyDirs`] and holds at least one [`Seg::Name`].
    segs: Vec<Seg>,
}

/// Where a pattern starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Anchor {
    /// The task's working directory: `src/**`, `/src/**`, `./src/**`.
    Cwd,
    /// The filesystem root: `//etc/**`.
    Root,
    /// The home directory: `~/.ssh/**`.
    Home,
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    /// `**`: any number of directories, none included.
    AnyDirs,
    /// One path segment matching this pattern.
    Name(Vec<Tok>),
}

impl PathPattern {
    /// Parses the text between the parentheses (already trimmed, not empty).
    pub(super) fn parse(spec: &str) -> Result<Self, RuleProblem> {
        if spec.starts_with('!') {
            return Err(RuleProblem::Negation);
        }
        let (anchor, body, anchored) = if let Some(rest) = spec.strip_prefix("//") {
            (Anchor::Root, rest, true)
        } else if let Some(rest) = spec.strip_prefix("~/") {
            (Anchor::Home, rest, true)
        } else if let Some(rest) = spec.strip_prefix('/') {
            (Anchor::Cwd, rest, true)
        } else if let Some(rest) = spec.strip_prefix("./") {
            (Anchor::Cwd, rest, true)
        } else {
            (Anchor::Cwd, spec, false)
        };
        let dir_only = body.ends_with('/');
        let body = body.trim_end_matches('/');
        let anchored = anchored || body.contains('/');

        let mut up = 0;
        let mut segs = Vec::new();
        for part in body.split('/') {
            match part {
                "" | "." => {}
                ".." if segs.is_empty() => up += 1,
                ".." => return Err(RuleProblem::ParentInPattern),
                "**" if segs.last() == Some(&Seg::AnyDirs) => {}
                "**" => segs.push(Seg::AnyDirs),
                name => segs.push(Seg::Name(glob::path_segment(name))),
            }
        }
        if segs.is_empty() {
            return Err(RuleProblem::NoFile);
        }
        if dir_only {
            segs.push(Seg::Name(vec![Tok::Star]));
        }
        if let Some(last) = segs.last_mut()
            && *last == Seg::AnyDirs
        {
            *last = Seg::Name(vec![Tok::Star]);
        }
        if !anchored && segs.first() != Some(&Seg::AnyDirs) {
            segs.insert(0, Seg::AnyDirs);
        }
        segs.push(Seg::AnyDirs);
        if anchor == Anchor::Root {
            up = 0;
        }
        Ok(PathPattern { anchor, up, segs })
    }

    /// Whether `path` (absolute, or relative to `cwd`) matches, after lexical
    /// normalisation. `None` when the pattern is under `~` and no home is known.
    pub(super) fn matches(&self, path: &str, cwd: &Path, home: Option<&Path>) -> Option<bool> {
        let mut base = match self.anchor {
            Anchor::Cwd => segments(cwd),
            Anchor::Root => Vec::new(),
            Anchor::Home => segments(home?),
        };
        base.truncate(base.len().saturating_sub(self.up));
        let full = resolve(segments(cwd), path);
        Some(
            full.strip_prefix(base.as_slice())
                .is_some_and(|rel| segs_match(&self.segs, rel)),
        )
    }

    /// Whether every path this pattern matches is matched by `wider`, for any working
    /// directory and home: patterns with different anchors are never compared.
    pub(super) fn covered_by(&self, wider: &PathPattern) -> bool {
        self.anchor == wider.anchor && self.up == wider.up && segs_cover(&wider.segs, &self.segs)
    }
}

/// The segments of a directory given as a path; a relative one is read from `/`.
fn segments(dir: &Path) -> Vec<String> {
    resolve(Vec::new(), &dir.to_string_lossy())
}

/// `path` resolved lexically against the directory `base` (as segments): an absolute path
/// starts again from the root, `.` is dropped, `..` removes a segment (never above the
/// root). Symbolic links are not followed: this is text, not the filesystem.
fn resolve(mut base: Vec<String>, path: &str) -> Vec<String> {
    if path.starts_with('/') {
        base.clear();
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                base.pop();
            }
            name => base.push(name.to_owned()),
        }
    }
    base
}

/// Whether the pattern segments match the path segments exactly.
fn segs_match(segs: &[Seg], path: &[String]) -> bool {
    let (s, p) = (segs.len(), path.len());
    let cols = p + 1;
    // ok[i * cols + j]: segs[i..] matches path[j..].
    let mut ok = vec![false; (s + 1) * cols];
    for i in (0..=s).rev() {
        for j in (0..=p).rev() {
            ok[i * cols + j] = match segs.get(i) {
                None => j == p,
                Some(Seg::AnyDirs) => ok[(i + 1) * cols + j] || (j < p && ok[i * cols + j + 1]),
                Some(Seg::Name(toks)) => {
                    j < p && glob::matches(toks, &path[j]) && ok[(i + 1) * cols + j + 1]
                }
            };
        }
    }
    ok[0]
}

/// Whether every segment sequence `narrow` matches is matched by `wide`. Sound, not
/// complete (see [`glob::covers`]).
fn segs_cover(wide: &[Seg], narrow: &[Seg]) -> bool {
    let (w, n) = (wide.len(), narrow.len());
    let cols = n + 1;
    // ok[i * cols + j]: wide[i..] covers narrow[j..].
    let mut ok = vec![false; (w + 1) * cols];
    for i in (0..=w).rev() {
        for j in (0..=n).rev() {
            ok[i * cols + j] = match (wide.get(i), narrow.get(j)) {
                (None, None) => true,
                (Some(Seg::AnyDirs), _) => {
                    ok[(i + 1) * cols + j] || (j < n && ok[i * cols + j + 1])
                }
                (Some(Seg::Name(a)), Some(Seg::Name(b))) => {
                    glob::covers(a, b) && ok[(i + 1) * cols + j + 1]
                }
                _ => false,
            };
        }
    }
    ok[0]
}
