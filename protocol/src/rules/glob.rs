//! Wildcard text patterns, the bottom layer under Bash specifiers and path segments: a pattern
//! is a sequence of [`Tok`]s, matched against one string ([`matches`]) or compared with
//! another pattern ([`covers`]).

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Tok {
    /// This character.
    Lit(char),
    /// Any one character (`?` in a path pattern).
    One,
    /// Any run of characters, the empty run included (`*`).
    Star,
    /// A space or a tab, the characters the shell separates words with: the word boundary
    /// after a Bash `prefix:*`.
    Space,
    /// One character of a bracket class (`[a-z]`, `[!0-9]`).
    Class {
        /// `[!..]` or `[^..]`: any character outside the ranges.
        negated: bool,
        /// Inclusive ranges; a single character is a range of one.
        ranges: Vec<(char, char)>,
    },
}

/// Above this many cells the inclusion table in [`covers`] is not built and the answer is
/// "not covered": rules are short, and a huge one should not cost seconds.
const MAX_COVER_CELLS: usize = 1 << 20;

impl Tok {
    /// Whether this token, read as a single-character token, accepts `c`.
    fn accepts(&self, c: char) -> bool {
        match self {
            Tok::Lit(l) => *l == c,
            Tok::One | Tok::Star => true,
            Tok::Space => matches!(c, ' ' | '\t'),
            Tok::Class { negated, ranges } => {
                *negated != ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
            }
        }
    }

    /// Whether every character the single-character token `narrow` accepts is accepted by
    /// `self`. Exact for literals; for two classes only when they are equal.
    fn covers_one(&self, narrow: &Tok) -> bool {
        match (self, narrow) {
            (Tok::One, _) => true,
            (wide, Tok::Lit(c)) => wide.accepts(*c),
            (wide, narrow) => wide == narrow,
        }
    }
}

/// The tokens of a Bash specifier: `*` is a wildcard, every other character stands for
/// itself.
pub(super) fn bash(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    for c in text.chars() {
        push(&mut toks, if c == '*' { Tok::Star } else { Tok::Lit(c) });
    }
    toks
}

/// The tokens of one path segment, gitignore-style: `*`, `?`, `[..]` classes and `\`
/// escapes. A `[` without its `]` stands for itself.
pub(super) fn path_segment(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (tok, next) = match chars[i] {
            '\\' if i + 1 < chars.len() => (Tok::Lit(chars[i + 1]), i + 2),
            '*' => (Tok::Star, i + 1),
            '?' => (Tok::One, i + 1),
            '[' => class(&chars, i).unwrap_or((Tok::Lit('['), i + 1)),
            c => (Tok::Lit(c), i + 1),
        };
        push(&mut toks, tok);
        i = next;
    }
    toks
}

/// Appends `tok`, folding a run of stars into one.
fn push(toks: &mut Vec<Tok>, tok: Tok) {
    if !(tok == Tok::Star && toks.last() == Some(&Tok::Star)) {
        toks.push(tok);
    }
}

/// The bracket class opening at `chars[open]`, and the index after its `]`; `None` when it
/// is never closed. A `]` right after the opening (or after its `!`/`^`) is a member.
fn class(chars: &[char], open: usize) -> Option<(Tok, usize)> {
    let mut i = open + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class { negated, ranges }, i + 1));
        }
        first = false;
        let (lo, after) = match c {
            '\\' => (*chars.get(i + 1)?, i + 2),
            c => (c, i + 1),
        };
        match (chars.get(after), chars.get(after + 1)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((lo, hi));
                i = after + 2;
            }
            _ => {
                ranges.push((lo, lo));
                i = after;
            }
        }
    }
}

/// Whether `pattern` matches the whole of `text`.
pub(super) fn matches(pattern: &[Tok], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last star seen, and where in the text its run currently ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(tok) if tok.accepts(text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|tok| *tok == Tok::Star)
}

/// Whether every string `narrow` matches is matched by `wide`. Sound but not complete: a
/// `true` is a proof, a `false` may be a pair this check cannot compare (two different
/// classes, a `?` against a class).
pub(super) fn covers(wide: &[Tok], narrow: &[Tok]) -> bool {
    let (w, n) = (wide.len(), narrow.len());
    let cols = n + 1;
    if (w + 1).saturating_mul(cols) > MAX_COVER_CELLS {
        return false;
    }
    // ok[i * cols + j]: wide[i..] covers narrow[j..].
    let mut ok = vec![false; (w + 1) * cols];
    for i in (0..=w).rev() {
        for j in (0..=n).rev() {
            ok[i * cols + j] = match (wide.get(i), narrow.get(j)) {
                (None, None) => true,
                // A wide star matches nothing more of narrow, or swallows narrow's next token.
                (Some(Tok::Star), _) => ok[(i + 1) * cols + j] || (j < n && ok[i * cols + j + 1]),
                (None, Some(_)) | (Some(_), None) | (Some(_), Some(Tok::Star)) => false,
                (Some(a), Some(b)) => a.covers_one(b) && ok[(i + 1) * cols + j + 1],
            };
        }
    }
    ok[0]
}
