//! A chain's plan, pure: validated before anything runs, and the prompts rendered from the
//! outputs of earlier steps.
//!
//! **Order.** A step without `depends_on` waits for the step before it (so a plain list is a
//! sequential pipeline); `depends_on: [..]` names the steps it waits for instead, and `[]`
//! lets it start at once. Steps whose dependencies are done run in parallel.
//!
//! **Placeholders.** `{previous_output}` is the output of the step's last dependency (the
//! step before it, by default); `{output:NAME}` is the output of step NAME, which must be
//! among the step's dependencies, directly or not — otherwise its output might not exist
//! yet. A skipped step's output is empty. Nothing else in a prompt is touched, so code with
//! braces passes through unchanged.
//!
//! **Checked before anything runs:** at least one step and at most
//! [`MAX_CHAIN_STEPS`]; non-empty prompts; unique names; known dependencies; no cycle;
//! placeholders that can be filled; retries within 10.

use claude_pool_protocol::tools::{ChainParams, FailurePolicy, MAX_CHAIN_STEPS, TaskOptions};

/// The most retries a step may ask for.
pub const MAX_RETRIES: u32 = 10;

/// One validated step.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// Unique within the chain.
    pub name: String,
    /// The template, placeholders unrendered.
    pub prompt: String,
    /// Indices of the steps it waits for, in the order given.
    pub deps: Vec<usize>,
    /// What happens when it does not complete.
    pub policy: FailurePolicy,
    /// Extra attempts with the retry policy.
    pub retries: u32,
    /// The chain's task options with the step's own overrides.
    pub options: TaskOptions,
}

/// A validated chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainPlan {
    /// The steps, in the order given.
    pub steps: Vec<PlannedStep>,
}

/// A placeholder found in a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placeholder {
    Previous,
    Output(String),
}

/// Every placeholder in `prompt`, with its byte range.
fn placeholders(prompt: &str) -> Vec<(std::ops::Range<usize>, Placeholder)> {
    const PREVIOUS: &str = "{previous_output}";
    const OUTPUT: &str = "{output:";
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = prompt[i..].find('{') {
        let start = i + at;
        let rest = &prompt[start..];
        if rest.starts_with(PREVIOUS) {
            out.push((start..start + PREVIOUS.len(), Placeholder::Previous));
            i = start + PREVIOUS.len();
        } else if let Some(tail) = rest.strip_prefix(OUTPUT)
            && let Some(close) = tail.find('}')
            && !tail[..close].contains('{')
        {
            let end = start + OUTPUT.len() + close + 1;
            out.push((start..end, Placeholder::Output(tail[..close].to_owned())));
            i = end;
        } else {
            i = start + 1;
        }
    }
    out
}

/// Validates `params` into a plan, or says what is wrong (naming the step).
pub fn plan(params: &ChainParams) -> Result<ChainPlan, String> {
    let n = params.steps.len();
    if n == 0 {
        return Err("a chain needs at least one step".into());
    }
    if n > MAX_CHAIN_STEPS {
        return Err(format!(
            "a chain takes at most {MAX_CHAIN_STEPS} steps; this one has {n}"
        ));
    }
    let chain_options = params.task_options();
    let names: Vec<String> = params
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| s.name.clone().unwrap_or_else(|| format!("step-{}", i + 1)))
        .collect();
    let label = |i: usize| format!("step {} ({:?})", i + 1, names[i]);
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() || name.len() > 64 || name.contains(['{', '}']) {
            return Err(format!(
                "{}: a step name must be 1-64 characters without braces",
                label(i)
            ));
        }
        if let Some(j) = names[..i].iter().position(|m| m == name) {
            return Err(format!(
                "{} has the same name as step {}; step names must be unique",
                label(i),
                j + 1
            ));
        }
    }
    let index_of = |name: &str| names.iter().position(|m| m == name);
    let mut steps = Vec::with_capacity(n);
    for (i, s) in params.steps.iter().enumerate() {
        if s.prompt.trim().is_empty() {
            return Err(format!("{}: the prompt is empty", label(i)));
        }
        let deps: Vec<usize> = match &s.depends_on {
            None if i == 0 => Vec::new(),
            None => vec![i - 1],
            Some(list) => {
                let mut deps = Vec::with_capacity(list.len());
                for d in list {
                    let j = index_of(d).ok_or_else(|| {
                        format!(
                            "{} depends on {d:?}, which is not a step of this chain",
                            label(i)
                        )
                    })?;
                    if j == i {
                        return Err(format!("{} depends on itself", label(i)));
                    }
                    if !deps.contains(&j) {
                        deps.push(j);
                    }
                }
                deps
            }
        };
        let policy = s.failure_policy.unwrap_or_default();
        let retries = match (policy, s.retries) {
            (FailurePolicy::Retry, None) => 1,
            (_, Some(r)) if r > MAX_RETRIES => {
                return Err(format!(
                    "{}: at most {MAX_RETRIES} retries, not {r}",
                    label(i)
                ));
            }
            (FailurePolicy::Retry, Some(r)) => r,
            (_, _) => 0,
        };
        let mut options = chain_options.clone();
        if let Some(t) = s.timeout {
            options.timeout = Some(t);
        }
        if let Some(m) = &s.model {
            options.model = Some(m.clone());
        }
        steps.push(PlannedStep {
            name: names[i].clone(),
            prompt: s.prompt.clone(),
            deps,
            policy,
            retries,
            options,
        });
    }
    check_acyclic(&steps)?;
    for (i, step) in steps.iter().enumerate() {
        let ancestors = ancestors(&steps, i);
        for (_, p) in placeholders(&step.prompt) {
            match p {
                Placeholder::Previous if step.deps.is_empty() => {
                    return Err(format!(
                        "{} uses {{previous_output}} but depends on no step",
                        label(i)
                    ));
                }
                Placeholder::Previous => {}
                Placeholder::Output(name) => {
                    let Some(j) = index_of(&name) else {
                        return Err(format!(
                            "{} uses {{output:{name}}}, but no step is named {name:?}",
                            label(i)
                        ));
                    };
                    if !ancestors.contains(&j) {
                        return Err(format!(
                            "{} uses {{output:{name}}}, but does not depend on {name:?} (add it to depends_on)",
                            label(i)
                        ));
                    }
                }
            }
        }
    }
    Ok(ChainPlan { steps })
}

/// Kahn's algorithm; a cycle is reported with the names of the steps on it.
fn check_acyclic(steps: &[PlannedStep]) -> Result<(), String> {
    let n = steps.len();
    let mut indegree: Vec<usize> = steps.iter().map(|s| s.deps.len()).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for (j, s) in steps.iter().enumerate() {
            if s.deps.contains(&i) {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(j);
                }
            }
        }
    }
    if seen == n {
        return Ok(());
    }
    let on_cycle: Vec<&str> = (0..n)
        .filter(|&i| indegree[i] > 0)
        .map(|i| steps[i].name.as_str())
        .collect();
    Err(format!(
        "the chain's dependencies form a cycle among {}",
        on_cycle.join(", ")
    ))
}

/// Every step `i` waits for, directly or not.
fn ancestors(steps: &[PlannedStep], i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = steps[i].deps.clone();
    while let Some(j) = stack.pop() {
        if !out.contains(&j) {
            out.push(j);
            stack.extend(steps[j].deps.iter().copied());
        }
    }
    out
}

impl ChainPlan {
    /// Step `i`'s prompt with its placeholders filled from `outputs` (by step index; a
    /// skipped or missing output is empty).
    pub fn render(&self, i: usize, outputs: &[Option<String>]) -> String {
        let step = &self.steps[i];
        let output_of = |j: usize| outputs.get(j).cloned().flatten().unwrap_or_default();
        let mut out = String::with_capacity(step.prompt.len());
        let mut last = 0;
        for (range, p) in placeholders(&step.prompt) {
            out.push_str(&step.prompt[last..range.start]);
            let value = match p {
                Placeholder::Previous => step.deps.last().map(|&j| output_of(j)),
                Placeholder::Output(name) => self
                    .steps
                    .iter()
                    .position(|s| s.name == name)
                    .map(output_of),
            };
            out.push_str(&value.unwrap_or_default());
            last = range.end;
        }
        out.push_str(&step.prompt[last..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_pool_protocol::tools::ChainStepParams;

    fn step(prompt: &str, name: Option<&str>, deps: Option<&[&str]>) -> ChainStepParams {
        ChainStepParams {
            prompt: prompt.into(),
            name: name.map(str::to_owned),
            depends_on: deps.map(|d| d.iter().map(|s| (*s).to_owned()).collect()),
            ..ChainStepParams::default()
        }
    }

    fn chain(steps: Vec<ChainStepParams>) -> ChainParams {
        ChainParams {
            steps,
            ..ChainParams::default()
        }
    }

    #[test]
    fn a_plain_list_is_sequential_and_depends_on_makes_a_dag() {
        let p = plan(&chain(vec![
            step("a", Some("plan"), None),
            step("b {previous_output}", None, None),
            step("c", Some("lint"), Some(&[])),
            step(
                "d {output:plan} {output:lint}",
                None,
                Some(&["step-2", "lint"]),
            ),
        ]))
        .expect("valid");
        let deps: Vec<Vec<usize>> = p.steps.iter().map(|s| s.deps.clone()).collect();
        assert_eq!(deps, vec![vec![], vec![0], vec![], vec![1, 2]]);
        assert_eq!(p.steps[1].name, "step-2");
    }

    #[test]
    fn mistakes_are_reported_before_anything_runs() {
        let cases: Vec<(ChainParams, &str)> = vec![
            (chain(vec![]), "at least one step"),
            (chain(vec![step(" ", None, None)]), "prompt is empty"),
            (
                chain(vec![step("a", Some("x"), None), step("b", Some("x"), None)]),
                "same name",
            ),
            (
                chain(vec![step("a", None, Some(&["nope"]))]),
                "\"nope\", which is not a step",
            ),
            (
                chain(vec![
                    step("a", Some("a"), Some(&["b"])),
                    step("b", Some("b"), Some(&["a"])),
                ]),
                "cycle among a, b",
            ),
            (
                chain(vec![step("{previous_output}", None, None)]),
                "depends on no step",
            ),
            (
                chain(vec![
                    step("a", Some("a"), None),
                    step("b {output:c}", Some("b"), None),
                    step("c", Some("c"), None),
                ]),
                "does not depend on \"c\"",
            ),
            (
                chain(vec![
                    step("a", Some("a"), None),
                    step("{output:zz}", None, None),
                ]),
                "no step is named \"zz\"",
            ),
            (
                chain(vec![step("a", Some("self"), Some(&["self"]))]),
                "depends on itself",
            ),
        ];
        for (params, want) in cases {
            let e = plan(&params).expect_err(want);
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
        let too_many = chain(
            (0..101)
                .map(|i| step(&format!("s{i}"), None, None))
                .collect(),
        );
        assert!(
            plan(&too_many)
                .expect_err("too many")
                .contains("at most 100")
        );
    }

    #[test]
    fn placeholders_are_filled_and_other_braces_left_alone() {
        let p = plan(&chain(vec![
            step("plan it", Some("plan"), None),
            step(
                "code: {previous_output}; fn x() {{ }} {output:plan}",
                None,
                None,
            ),
            step(
                "{output:plan}+{previous_output}",
                None,
                Some(&["plan", "step-2"]),
            ),
        ]))
        .expect("valid");
        let outputs = vec![Some("P".to_owned()), Some("C".to_owned()), None];
        assert_eq!(p.render(1, &outputs), "code: P; fn x() {{ }} P");
        assert_eq!(p.render(2, &outputs), "P+C");
        assert_eq!(p.render(0, &outputs), "plan it");
    }

    #[test]
    fn retries_default_to_one_with_the_retry_policy() {
        let mut s = step("a", None, None);
        s.failure_policy = Some(FailurePolicy::Retry);
        let p = plan(&chain(vec![s.clone()])).expect("valid");
        assert_eq!(p.steps[0].retries, 1);
        s.retries = Some(11);
        assert!(plan(&chain(vec![s])).is_err());
    }
}
