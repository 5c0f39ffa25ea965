//! Fluentd tag patterns: `a.b`, `*`, `**`, `{a,b}`, several separated by spaces.
//!
//! Semantics follow Fluentd's `GlobMatchPattern` (lib/fluent/match.rb): `*` matches
//! any run of characters within one tag part (so `a.*` matches `a.b` but not `a` nor
//! `a.b.c`, and `td.x*` matches `td.xyz`); `**` matches anything, and `a.**` / `**.a`
//! also match zero parts (`a`); `{x,y}` matches either alternative, which may itself
//! hold `*`, `**` or dots; `\` escapes the next character. A string with several
//! whitespace-separated patterns matches when any of them does.
//!
//! Patterns compile once into a tiny instruction list that is run as a Thompson
//! NFA over the tag bytes with fixed-size bitsets: matching never allocates and
//! takes time linear in the tag length, whatever the pattern.
//!
//! Stricter than Fluentd, to catch typos: unbalanced braces, a `,` outside braces,
//! a trailing `.` or `\`, and `/regex/` patterns are errors.

/// Most instructions one compiled pattern may have (bounds the bitset size).
const MAX_INSTS: usize = 512;
const WORDS: usize = MAX_INSTS / 64;
/// Deepest `{` nesting accepted (bounds recursion while compiling).
const MAX_NESTING: usize = 16;

/// A compiled tag pattern.
#[derive(Clone, Debug)]
pub struct TagPattern {
    source: String,
    matcher: Matcher,
}

#[derive(Clone, Debug)]
enum Matcher {
    /// `**`: every tag.
    Any,
    /// Only literal tags: compare strings.
    Exact(Vec<String>),
    /// The general case.
    Program(Vec<Inst>),
}

/// One NFA instruction.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Inst {
    /// Consume this byte.
    Byte(u8),
    /// Consume any byte but `.` (the body of `*`).
    PartByte,
    /// Consume any byte (the body of `**`).
    AnyByte,
    /// Continue at both targets.
    Split(u16, u16),
    /// Continue at the target.
    Jmp(u16),
    /// Continue only at the start of the tag (`\A`).
    AtStart,
    /// Continue only before a `.` or at the end of the tag (`(?![^.])`).
    AtPartEnd,
    /// The tag matches when this is reached at its end.
    Match,
}

/// A pattern that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("bad tag pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

/// A pattern as parsed, before compilation.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Byte(u8),
    /// `*`: `[^.]*`.
    PartStar,
    /// `**` not followed by `.`: `.*`.
    AnyStar,
    /// `**.`: `(?:.*\.|\A)`.
    AnyPrefix,
    /// `.` before `**`: `(?![^.])`.
    PartEnd,
    Alt(Vec<Vec<Node>>),
}

impl TagPattern {
    /// Compiles a pattern (one or several separated by whitespace).
    pub fn parse(pattern: &str) -> Result<TagPattern, PatternError> {
        let err = |reason: String| PatternError {
            pattern: pattern.to_string(),
            reason,
        };
        let mut alternatives = Vec::new();
        for single in pattern.split_whitespace() {
            alternatives.push(parse_one(single).map_err(|r| err(format!("in `{single}`: {r}")))?);
        }
        if alternatives.is_empty() {
            return Err(err(
                "empty pattern (expected e.g. \"td.*.*\" or \"**\")".to_string()
            ));
        }
        let matcher = if alternatives.iter().any(|a| *a == [Node::AnyStar]) {
            Matcher::Any
        } else if alternatives
            .iter()
            .all(|a| a.iter().all(|n| matches!(n, Node::Byte(_))))
        {
            Matcher::Exact(
                alternatives
                    .iter()
                    .map(|a| {
                        let bytes: Vec<u8> = a
                            .iter()
                            .filter_map(|n| match n {
                                Node::Byte(b) => Some(*b),
                                _ => None,
                            })
                            .collect();
                        String::from_utf8_lossy(&bytes).into_owned()
                    })
                    .collect(),
            )
        } else {
            let mut program = Vec::new();
            emit(&[Node::Alt(alternatives)], &mut program);
            program.push(Inst::Match);
            if program.len() > MAX_INSTS {
                return Err(err(format!(
                    "too complex ({} steps, at most {MAX_INSTS}); split it into several [[match]] entries",
                    program.len()
                )));
            }
            Matcher::Program(program)
        };
        Ok(TagPattern {
            source: pattern.to_string(),
            matcher,
        })
    }

    /// Whether `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Exact(tags) => tags.iter().any(|t| t == tag),
            Matcher::Program(program) => run(program, tag.as_bytes()),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Parses one whitespace-free pattern, following Fluentd's character loop.
fn parse_one(pat: &str) -> Result<Vec<Node>, String> {
    if pat.starts_with('/') {
        return Err(
            "regular expression patterns (/.../) are not supported; use *, ** and {a,b}"
                .to_string(),
        );
    }
    let bytes = pat.as_bytes();
    // The sequence being built for each open `{`, plus the finished alternatives.
    let mut stack: Vec<(Vec<Vec<Node>>, Vec<Node>)> = Vec::new();
    let mut current: Vec<Node> = Vec::new();
    let mut dot = false;
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if bytes.get(i..i + 2) == Some(b"**") {
            if dot {
                current.push(Node::PartEnd);
                dot = false;
            }
            if bytes.get(i + 2) == Some(&b'.') {
                current.push(Node::AnyPrefix);
                i += 3;
            } else {
                current.push(Node::AnyStar);
                i += 2;
            }
            continue;
        }
        if dot {
            current.push(Node::Byte(b'.'));
            dot = false;
        }
        match c {
            b'\\' => match bytes.get(i + 1) {
                Some(&next) => {
                    current.push(Node::Byte(next));
                    i += 1;
                }
                None => return Err("ends with `\\` (escape what?)".to_string()),
            },
            b'.' => {
                if current.is_empty() && stack.is_empty() {
                    return Err("starts with `.` (tags have no empty parts)".to_string());
                }
                dot = true;
            }
            b'*' => current.push(Node::PartStar),
            b'{' => {
                if stack.len() >= MAX_NESTING {
                    return Err(format!("more than {MAX_NESTING} nested `{{`"));
                }
                stack.push((Vec::new(), std::mem::take(&mut current)));
            }
            b'}' => {
                let Some((mut alts, before)) = stack.pop() else {
                    return Err("`}` without `{`".to_string());
                };
                alts.push(std::mem::replace(&mut current, before));
                current.push(Node::Alt(alts));
            }
            b',' => match stack.last_mut() {
                Some((alts, _)) => alts.push(std::mem::take(&mut current)),
                None => {
                    return Err(
                        "`,` outside `{...}`: write `{a,b}` for alternatives, or separate patterns with spaces"
                            .to_string(),
                    );
                }
            },
            other => current.push(Node::Byte(other)),
        }
        i += 1;
    }
    if dot {
        return Err("ends with `.` (expected another tag part, `*` or `**`)".to_string());
    }
    if !stack.is_empty() {
        return Err("`{` without `}` (no spaces inside `{a,b}`)".to_string());
    }
    Ok(current)
}

/// Appends the instructions for `nodes` to `program`.
fn emit(nodes: &[Node], program: &mut Vec<Inst>) {
    for node in nodes {
        match node {
            Node::Byte(b) => program.push(Inst::Byte(*b)),
            Node::PartStar => emit_loop(program, Inst::PartByte),
            Node::AnyStar => emit_loop(program, Inst::AnyByte),
            Node::PartEnd => program.push(Inst::AtPartEnd),
            Node::AnyPrefix => {
                // Split(any, start); any: .* then '.'; Jmp end; start: AtStart; end:
                let split = program.len();
                program.push(Inst::Split(0, 0));
                let any = program.len();
                emit_loop(program, Inst::AnyByte);
                program.push(Inst::Byte(b'.'));
                let jmp = program.len();
                program.push(Inst::Jmp(0));
                let start = program.len();
                program.push(Inst::AtStart);
                let end = program.len();
                patch(program, split, Inst::Split(idx(any), idx(start)));
                patch(program, jmp, Inst::Jmp(idx(end)));
            }
            Node::Alt(alts) => {
                let mut jumps = Vec::new();
                for (n, alt) in alts.iter().enumerate() {
                    if n + 1 < alts.len() {
                        let split = program.len();
                        program.push(Inst::Split(0, 0));
                        emit(alt, program);
                        jumps.push(program.len());
                        program.push(Inst::Jmp(0));
                        let next = program.len();
                        patch(program, split, Inst::Split(idx(split + 1), idx(next)));
                    } else {
                        emit(alt, program);
                    }
                }
                let end = idx(program.len());
                for j in jumps {
                    patch(program, j, Inst::Jmp(end));
                }
            }
        }
    }
}

/// `body*`: L: Split(L+1, E); body; Jmp L; E:
fn emit_loop(program: &mut Vec<Inst>, body: Inst) {
    let l = program.len();
    program.push(Inst::Split(0, 0));
    program.push(body);
    program.push(Inst::Jmp(idx(l)));
    let e = program.len();
    patch(program, l, Inst::Split(idx(l + 1), idx(e)));
}

/// An instruction index; programs longer than [`MAX_INSTS`] are rejected before
/// they run, so a clamped index is never followed.
fn idx(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

fn patch(program: &mut [Inst], at: usize, inst: Inst) {
    if let Some(slot) = program.get_mut(at) {
        *slot = inst;
    }
}

/// A set of instruction indices.
#[derive(Clone, Copy)]
struct Set([u64; WORDS]);

impl Set {
    fn new() -> Set {
        Set([0; WORDS])
    }
    /// Inserts `pc`; false if it was already there (or out of range).
    fn insert(&mut self, pc: usize) -> bool {
        match self.0.get_mut(pc / 64) {
            Some(word) => {
                let bit = 1u64 << (pc % 64);
                let fresh = *word & bit == 0;
                *word |= bit;
                fresh
            }
            None => false,
        }
    }
    fn contains(&self, pc: usize) -> bool {
        self.0
            .get(pc / 64)
            .is_some_and(|w| w & (1u64 << (pc % 64)) != 0)
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// Adds `pc` and everything reachable from it without consuming a byte, with the
/// reader at `pos` in `tag`.
fn add(program: &[Inst], set: &mut Set, pc: usize, tag: &[u8], pos: usize) {
    if !set.insert(pc) {
        return;
    }
    match program.get(pc) {
        Some(Inst::Jmp(t)) => add(program, set, usize::from(*t), tag, pos),
        Some(Inst::Split(a, b)) => {
            add(program, set, usize::from(*a), tag, pos);
            add(program, set, usize::from(*b), tag, pos);
        }
        Some(Inst::AtStart) if pos == 0 => add(program, set, pc + 1, tag, pos),
        Some(Inst::AtPartEnd) if tag.get(pos).is_none_or(|b| *b == b'.') => {
            add(program, set, pc + 1, tag, pos)
        }
        _ => {}
    }
}

/// Runs the NFA: every thread advances one byte at a time.
fn run(program: &[Inst], tag: &[u8]) -> bool {
    let mut current = Set::new();
    add(program, &mut current, 0, tag, 0);
    for (pos, &byte) in tag.iter().enumerate() {
        let mut next = Set::new();
        for (pc, inst) in program.iter().enumerate() {
            if !current.contains(pc) {
                continue;
            }
            let advance = match inst {
                Inst::Byte(b) => *b == byte,
                Inst::PartByte => byte != b'.',
                Inst::AnyByte => true,
                _ => false,
            };
            if advance {
                add(program, &mut next, pc + 1, tag, pos + 1);
            }
        }
        if next.is_empty() {
            return false;
        }
        current = next;
    }
    program
        .iter()
        .enumerate()
        .any(|(pc, inst)| *inst == Inst::Match && current.contains(pc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, matching: &[&str], not_matching: &[&str]) {
        let p = TagPattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
        for tag in matching {
            assert!(p.matches(tag), "`{pattern}` should match `{tag}`");
        }
        for tag in not_matching {
            assert!(!p.matches(tag), "`{pattern}` should not match `{tag}`");
        }
    }

    /// The examples of Fluentd's "Config File Syntax" page and its test_match.rb.
    #[test]
    fn fluentd_examples() {
        check("a", &["a"], &["b", "a.b", "ab"]);
        check("a.b", &["a.b"], &["aab", "a", "a.b.c"]);
        check("a.*", &["a.b", "a.c"], &["a", "a.b.c", "ab"]);
        check(
            "a.**",
            &["a", "a.b", "a.b.c"],
            &["ab", "abc", "ab.c", "ab.d.e", "b.a"],
        );
        check("{a,b}", &["a", "b"], &["c", "ab", "a.b"]);
        check("a*", &["a", "ab", "abc"], &["a.b", "ab.c", "ba"]);
        check("*a", &["a", "ba", "cba"], &["ab"]);
        check("*a*", &["a", "ba", "ac", "bac"], &["b", "b.a"]);
        check("a.*.c", &["a.b.c", "a.c.c"], &["a.c", "a.b.b.c"]);
        check(
            "a**",
            &["a", "ab", "abc", "a.b", "ab.c", "ab.d.e"],
            &["b", "ba"],
        );
        check(
            "**.a",
            &["a", "b.a", "cb.a", "d.e.a"],
            &["ba", "c.ba", "a.b"],
        );
        check("**a", &["a", "ba", "c.ba", "b.a", "cb.a", "d.e.a"], &["ab"]);
        check("a.{b,c}", &["a.b", "a.c"], &["a.d", "a.bc"]);
        check(
            "a.{b,c}.**",
            &["a.b", "a.c", "a.b.x", "a.c.x.y"],
            &["a.d", "a.cd"],
        );
        check("a.{b.**,c}", &["a.b", "a.b.c", "a.c"], &["a.c.d", "a.bc"]);
        check(
            "a.{b,c}.*",
            &["a.b.x", "a.c.y"],
            &["a.b", "a.d.x", "a.b.x.y"],
        );
    }

    /// `<match a b>` and `<match a.** b.*>` from the same page.
    #[test]
    fn several_patterns() {
        check("a b", &["a", "b"], &["c", "a.b"]);
        check(
            "a.** b.*",
            &["a", "a.b", "a.b.c", "b.d"],
            &["b", "b.c.d", "c"],
        );
        check(
            "  td.*.*\t\tsys.** ",
            &["td.db.t", "sys", "sys.x"],
            &["td.db"],
        );
    }

    #[test]
    fn tidepool_routes() {
        check("**", &["", "td.db.table", "x"], &[]);
        check(
            "td.*.*",
            &["td.test_database.cpu_info"],
            &["td.db", "td.a.b.c", "tdx.a.b"],
        );
        check("td.x*", &["td.x", "td.xyz"], &["td.y", "td.x.y"]);
        check("td.{db1,db2}.*", &["td.db1.t", "td.db2.t"], &["td.db3.t"]);
        check(
            "a.**.b",
            &["a.b", "a.x.b", "a.x.y.b"],
            &["ab", "a.xb", "a.b.c"],
        );
        check("td.\\*", &["td.*"], &["td.x"]);
        check("{a,{b,c}.d}", &["a", "b.d", "c.d"], &["d", "b"]);
        check("{a,}x", &["ax", "x"], &["bx"]);
    }

    #[test]
    fn fast_paths_agree() {
        assert!(matches!(
            TagPattern::parse("**").map(|p| p.matcher),
            Ok(Matcher::Any)
        ));
        assert!(matches!(
            TagPattern::parse("a.b c").map(|p| p.matcher),
            Ok(Matcher::Exact(_))
        ));
        check("a.b c", &["a.b", "c"], &["a", "a.bc"]);
    }

    #[test]
    fn errors_name_the_pattern_and_reason() {
        for (pattern, reason) in [
            ("", "empty pattern"),
            ("   ", "empty pattern"),
            ("a.{b,c", "`{` without `}`"),
            ("a.{b, c}", "`{` without `}`"),
            ("a}", "`}` without `{`"),
            ("a,b", "`,` outside `{...}`"),
            ("a.", "ends with `.`"),
            (".a", "starts with `.`"),
            ("a\\", "ends with `\\`"),
            ("/td\\..*/", "regular expression"),
        ] {
            match TagPattern::parse(pattern) {
                Ok(_) => panic!("`{pattern}` should not parse"),
                Err(e) => {
                    assert_eq!(e.pattern, pattern);
                    assert!(e.reason.contains(reason), "`{pattern}`: {}", e.reason);
                    assert!(
                        e.to_string()
                            .starts_with(&format!("bad tag pattern '{pattern}': "))
                    );
                }
            }
        }
    }

    #[test]
    fn too_complex_is_an_error_not_a_panic() {
        let long = "{a,b}.".repeat(200) + "c";
        let e = TagPattern::parse(&long).err().map(|e| e.reason);
        assert!(e.is_some_and(|r| r.contains("too complex")));
    }

    /// A direct backtracking reading of the parsed pattern, to check the compiled
    /// NFA against.
    fn reference(nodes: &[Node], tag: &[u8], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        let Some((first, rest)) = nodes.split_first() else {
            return k(pos);
        };
        let mut next = |p: usize| reference(rest, tag, p, k);
        match first {
            Node::Byte(b) => tag.get(pos) == Some(b) && next(pos + 1),
            Node::PartStar => {
                let end = tag[pos..]
                    .iter()
                    .position(|c| *c == b'.')
                    .map_or(tag.len(), |d| pos + d);
                (pos..=end).any(&mut next)
            }
            Node::AnyStar => (pos..=tag.len()).any(&mut next),
            Node::AnyPrefix => {
                (pos == 0 && next(0)) || (pos..tag.len()).any(|d| tag[d] == b'.' && next(d + 1))
            }
            Node::PartEnd => tag.get(pos).is_none_or(|c| *c == b'.') && next(pos),
            Node::Alt(alts) => alts.iter().any(|alt| reference(alt, tag, pos, &mut next)),
        }
    }

    /// Patterns built from the pieces that matter, so `.**`, `**.` and braces are common.
    fn pattern_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        let pieces = vec!["a", "b", ".", "*", "**", ".**", "**.", "{", "}", ",", " "];
        proptest::collection::vec(proptest::sample::select(pieces), 1..9).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn compiled_matcher_agrees_with_reference(pattern in pattern_strategy(), tag in "[ab.]{0,7}") {
            if let Ok(p) = TagPattern::parse(&pattern) {
                let expected = pattern.split_whitespace().any(|single| {
                    parse_one(single).is_ok_and(|nodes| reference(&nodes, tag.as_bytes(), 0, &mut |end| end == tag.len()))
                });
                proptest::prop_assert_eq!(p.matches(&tag), expected, "pattern {:?} tag {:?}", pattern, tag);
            }
        }

        #[test]
        fn never_panics(pattern in "[a-c.*{},\\\\ ]{0,24}", tag in "[a-c.]{0,12}") {
            if let Ok(p) = TagPattern::parse(&pattern) {
                let _ = p.matches(&tag);
            }
        }

        #[test]
        fn literal_tags_match_themselves(tag in "[a-z0-9_]{1,8}(\\.[a-z0-9_]{1,8}){0,4}") {
            let p = TagPattern::parse(&tag).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert!(p.matches(&tag));
            proptest::prop_assert!(TagPattern::parse("**").is_ok_and(|p| p.matches(&tag)));
        }
    }
}
