//! The `pattern`s the validator checks: a sequence of single-character items, each
//! repeated (`[A-Z]{3}`, `\d+`, `[a-z0-9_-]*`, `x?`), optionally anchored (`^…$`). That is
//! what payload schemas use to constrain codes and identifiers; a pattern with groups,
//! alternation or look-arounds is refused when the schema is compiled, rather than
//! checked less than it says. Matching takes time linear in the text per item.

/// One character class: what a single position of the text may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    /// Any character but a line terminator (`.`).
    Any,
    /// One of these ranges (inclusive), or, when `negated`, none of them.
    Ranges {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
}

impl Class {
    fn single(c: char) -> Self {
        Class::Ranges {
            ranges: vec![(c, c)],
            negated: false,
        }
    }

    fn holds(&self, c: char) -> bool {
        match self {
            Class::Any => !matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}'),
            Class::Ranges { ranges, negated } => {
                ranges.iter().any(|&(low, high)| (low..=high).contains(&c)) != *negated
            }
        }
    }
}

/// A class repeated `min` to `max` times (`None`: no upper bound).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    class: Class,
    min: usize,
    max: Option<usize>,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    source: String,
    items: Vec<Item>,
    anchored_start: bool,
    anchored_end: bool,
}

impl Pattern {
    /// Compiles a pattern, or says what in it the validator does not check.
    pub(super) fn compile(source: &str) -> Result<Self, String> {
        let mut chars = source.chars().peekable();
        let anchored_start = chars.next_if_eq(&'^').is_some();
        let mut items = Vec::new();
        let mut anchored_end = false;
        while let Some(c) = chars.next() {
            let class = match c {
                '$' if chars.peek().is_none() => {
                    anchored_end = true;
                    break;
                }
                '.' => Class::Any,
                '\\' => escape(chars.next())?.unwrap_or_else(Class::single),
                '[' => bracket(&mut chars)?,
                '^' | '$' | '|' | '(' | ')' | ']' | '{' | '}' | '?' | '*' | '+' => {
                    return Err(format!(
                        "`{c}` here (the validator checks patterns of single-character items \
                         with repetitions, without groups or alternation)"
                    ));
                }
                c => Class::single(c),
            };
            let (min, max) = quantifier(&mut chars)?;
            if chars.next_if_eq(&'?').is_some() {
                return Err("a lazy repetition (`??`, `*?`, `+?`, `}?`)".to_owned());
            }
            items.push(Item { class, min, max });
        }
        Ok(Pattern {
            source: source.to_owned(),
            items,
            anchored_start,
            anchored_end,
        })
    }

    /// The pattern as written.
    pub(super) fn source(&self) -> &str {
        &self.source
    }

    /// Whether the text holds a match (anywhere, unless anchored), as JSON Schema reads
    /// `pattern`.
    pub(super) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        // reachable[p]: the items so far can end at position p.
        let mut reachable: Vec<bool> = (0..=n).map(|p| !self.anchored_start || p == 0).collect();
        for item in &self.items {
            // run[p]: how many characters from p the class holds in a row.
            let mut run = vec![0usize; n + 1];
            for p in (0..n).rev() {
                run[p] = if item.class.holds(chars[p]) {
                    run[p + 1] + 1
                } else {
                    0
                };
            }
            // Each reachable p reaches p+min ..= p+min(max, run[p]): intervals summed
            // through a difference array.
            let mut delta = vec![0isize; n + 2];
            for p in (0..=n).filter(|&p| reachable[p]) {
                let longest = item.max.map_or(run[p], |max| max.min(run[p]));
                if longest >= item.min {
                    delta[p + item.min] += 1;
                    delta[p + longest + 1] -= 1;
                }
            }
            let mut open = 0;
            for (p, slot) in reachable.iter_mut().enumerate() {
                open += delta[p];
                *slot = open > 0;
            }
        }
        if self.anchored_end {
            reachable[n]
        } else {
            reachable.contains(&true)
        }
    }
}

/// The class of an escape (`\d`, `\w`), or the character it stands for (`\.`).
fn escape(c: Option<char>) -> Result<Result<Class, char>, String> {
    let digits = || vec![('0', '9')];
    let word = || vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
    match c {
        Some('d') => Ok(Ok(Class::Ranges {
            ranges: digits(),
            negated: false,
        })),
        Some('D') => Ok(Ok(Class::Ranges {
            ranges: digits(),
            negated: true,
        })),
        Some('w') => Ok(Ok(Class::Ranges {
            ranges: word(),
            negated: false,
        })),
        Some('W') => Ok(Ok(Class::Ranges {
            ranges: word(),
            negated: true,
        })),
        Some(c) if c.is_ascii_punctuation() => Ok(Err(c)),
        Some(c) => Err(format!("the escape `\\{c}`")),
        None => Err("a trailing `\\`".to_owned()),
    }
}

/// A bracket class, after its `[`.
fn bracket(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Class, String> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        let low = match chars.next() {
            None => return Err("an unclosed `[`".to_owned()),
            Some(']') => break,
            Some('[') => return Err("a `[` inside a class".to_owned()),
            Some('\\') => match escape(chars.next())? {
                Ok(Class::Ranges {
                    ranges: inner,
                    negated: false,
                }) => {
                    ranges.extend(inner);
                    continue;
                }
                Ok(_) => return Err("a negated escape (`\\D`, `\\W`) inside a class".to_owned()),
                Err(c) => c,
            },
            Some(c) => c,
        };
        // `a-z` is a range; a `-` before `]` is itself.
        let high = if chars.peek() == Some(&'-') {
            let mut ahead = chars.clone();
            ahead.next();
            match ahead.peek() {
                Some(']') | None => low,
                Some(_) => {
                    chars.next();
                    match chars.next() {
                        Some('\\') => match escape(chars.next())? {
                            Err(c) => c,
                            Ok(_) => return Err("a class escape ending a range".to_owned()),
                        },
                        Some(c) => c,
                        None => return Err("an unclosed `[`".to_owned()),
                    }
                }
            }
        } else {
            low
        };
        if high < low {
            return Err(format!("the range `{low}-{high}`, whose end comes first"));
        }
        ranges.push((low, high));
    }
    Ok(Class::Ranges { ranges, negated })
}

/// The repetition after an item: `?`, `*`, `+`, `{n}`, `{n,}`, `{n,m}`, or once.
fn quantifier(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<(usize, Option<usize>), String> {
    match chars.peek() {
        Some('?') => {
            chars.next();
            Ok((0, Some(1)))
        }
        Some('*') => {
            chars.next();
            Ok((0, None))
        }
        Some('+') => {
            chars.next();
            Ok((1, None))
        }
        Some('{') => {
            chars.next();
            let mut inside = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) if c.is_ascii_digit() || c == ',' => inside.push(c),
                    _ => {
                        return Err(
                            "a `{` that is not a repetition `{n}`, `{n,}` or `{n,m}`".to_owned()
                        );
                    }
                }
            }
            let number = |text: &str| {
                text.parse::<usize>()
                    .map_err(|_| format!("the repetition `{{{inside}}}`"))
            };
            let (min, max) = match inside.split_once(',') {
                None => (number(&inside)?, Some(number(&inside)?)),
                Some((min, "")) => (number(min)?, None),
                Some((min, max)) => (number(min)?, Some(number(max)?)),
            };
            if max.is_some_and(|max| max < min) {
                return Err(format!(
                    "the repetition `{{{inside}}}`, whose end comes first"
                ));
            }
            Ok((min, max))
        }
        _ => Ok((1, Some(1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Pattern::compile(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(text)
    }

    #[test]
    fn anchored_patterns_match_the_whole_text() {
        assert!(matches("^[A-Z]{3}$", "USD"));
        for bad in ["usd", "US", "USDX", "", "U5D"] {
            assert!(!matches("^[A-Z]{3}$", bad), "{bad}");
        }
        assert!(matches(r"^\d{2,4}-[a-z_-]+$", "2026-a_b-c"));
        assert!(!matches(r"^\d{2,4}-[a-z_-]+$", "20261-ab"));
        assert!(matches(r"^v\.?\d*$", "v.12"));
        assert!(matches(r"^v\.?\d*$", "v"));
        assert!(matches("^[^ ]+$", "no-space"));
        assert!(!matches("^[^ ]+$", "a space"));
    }

    #[test]
    fn unanchored_patterns_match_anywhere() {
        assert!(matches("[0-9]", "abc1"));
        assert!(!matches("[0-9]", "abc"));
        assert!(matches("ab$", "xxab"));
        assert!(!matches("^ab", "xab"));
        assert!(matches("", "anything"));
    }

    #[test]
    fn what_is_not_checked_is_refused_when_compiled() {
        for refused in ["(a|b)", "a|b", "a*?", r"\s", "[a", "a{2,1}", "a{x}", "^*"] {
            assert!(Pattern::compile(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_long_text_against_many_repetitions_is_quick() {
        let text = "a".repeat(100_000) + "b";
        assert!(!matches("^a*a*a*a*a*a*a*a*c$", &text));
        assert!(matches("^a*a*a*a*a*a*a*a*b$", &text));
    }
}
