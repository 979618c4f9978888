//! The PowerShell values the plan writes for a step's parameters, evaluated as PowerShell
//! evaluates them (about_Arrays, about_Operators), so the fake VM reads them as the VM would.

/// A value of the PowerShell expressions the plan writes for its parameters: strings, numbers,
/// arrays and hashtables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PsValue {
    /// `'text'`, or a number as written.
    Str(String),
    /// An array.
    Array(Vec<PsValue>),
    /// `@{ Key = value; ... }`.
    Table(Vec<(String, PsValue)>),
}

impl PsValue {
    /// Evaluates `'a'`, `@(...)`, `(...)`, `a, b` and unary `,a` as PowerShell does
    /// (about_Arrays, about_Operators): `@(X)` enumerates X once, so `@(@('a', 'b'))` is the
    /// two strings, not an array holding an array; `,X` is an array holding X.
    pub fn eval(expr: &str) -> Option<PsValue> {
        let chars: Vec<char> = expr.chars().collect();
        let mut pos = 0;
        let v = Self::list(&chars, &mut pos)?;
        Self::skip(&chars, &mut pos);
        (pos == chars.len()).then_some(v)
    }

    fn skip(c: &[char], pos: &mut usize) {
        while *pos < c.len() && c[*pos].is_whitespace() {
            *pos += 1;
        }
    }

    fn list(c: &[char], pos: &mut usize) -> Option<PsValue> {
        let mut items = vec![Self::unary(c, pos)?];
        loop {
            Self::skip(c, pos);
            if c.get(*pos) != Some(&',') {
                break;
            }
            *pos += 1;
            items.push(Self::unary(c, pos)?);
        }
        Some(if items.len() == 1 {
            items.pop()?
        } else {
            PsValue::Array(items)
        })
    }

    fn unary(c: &[char], pos: &mut usize) -> Option<PsValue> {
        Self::skip(c, pos);
        if c.get(*pos) == Some(&',') {
            *pos += 1;
            return Some(PsValue::Array(vec![Self::unary(c, pos)?]));
        }
        Self::primary(c, pos)
    }

    fn primary(c: &[char], pos: &mut usize) -> Option<PsValue> {
        Self::skip(c, pos);
        match c.get(*pos)? {
            '\'' => {
                let mut s = String::new();
                *pos += 1;
                loop {
                    let ch = *c.get(*pos)?;
                    *pos += 1;
                    if ch == '\'' {
                        if c.get(*pos) == Some(&'\'') {
                            s.push('\'');
                            *pos += 1;
                        } else {
                            return Some(PsValue::Str(s));
                        }
                    } else {
                        s.push(ch);
                    }
                }
            }
            '@' if c.get(*pos + 1) == Some(&'(') => {
                *pos += 2;
                Self::skip(c, pos);
                let inner = if c.get(*pos) == Some(&')') {
                    None
                } else {
                    Some(Self::list(c, pos)?)
                };
                Self::skip(c, pos);
                (c.get(*pos) == Some(&')')).then_some(())?;
                *pos += 1;
                Some(PsValue::Array(
                    inner.map(PsValue::items).unwrap_or_default(),
                ))
            }
            '@' if c.get(*pos + 1) == Some(&'{') => {
                *pos += 2;
                let mut entries = Vec::new();
                loop {
                    Self::skip(c, pos);
                    match c.get(*pos)? {
                        '}' => {
                            *pos += 1;
                            return Some(PsValue::Table(entries));
                        }
                        ';' => *pos += 1,
                        _ => {
                            let start = *pos;
                            while c.get(*pos).is_some_and(|ch| ch.is_alphanumeric()) {
                                *pos += 1;
                            }
                            let key: String = c[start..*pos].iter().collect();
                            Self::skip(c, pos);
                            if key.is_empty() || c.get(*pos) != Some(&'=') {
                                return None;
                            }
                            *pos += 1;
                            entries.push((key, Self::list(c, pos)?));
                        }
                    }
                }
            }
            ch if ch.is_ascii_digit() => {
                let start = *pos;
                while c.get(*pos).is_some_and(char::is_ascii_digit) {
                    *pos += 1;
                }
                Some(PsValue::Str(c[start..*pos].iter().collect()))
            }
            '(' => {
                *pos += 1;
                let v = Self::list(c, pos)?;
                Self::skip(c, pos);
                (c.get(*pos) == Some(&')')).then_some(())?;
                *pos += 1;
                Some(v)
            }
            _ => None,
        }
    }

    /// What `foreach` walks: an array's elements, or the value itself.
    pub fn items(self) -> Vec<PsValue> {
        match self {
            PsValue::Array(v) => v,
            s @ (PsValue::Str(_) | PsValue::Table(_)) => vec![s],
        }
    }

    /// A hashtable's entry.
    pub fn get(&self, key: &str) -> Option<&PsValue> {
        match self {
            PsValue::Table(entries) => entries
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// `$v[i]`: an array's element, a string's character (empty past the end).
    pub fn index(&self, i: usize) -> PsValue {
        match self {
            PsValue::Array(v) => v.get(i).cloned().unwrap_or(PsValue::Str(String::new())),
            PsValue::Str(s) => PsValue::Str(s.chars().nth(i).map(String::from).unwrap_or_default()),
            PsValue::Table(_) => PsValue::Str(String::new()),
        }
    }

    /// As a string (an array's elements joined with spaces, as PowerShell converts it).
    pub fn text(&self) -> String {
        match self {
            PsValue::Str(s) => s.clone(),
            PsValue::Array(v) => v.iter().map(PsValue::text).collect::<Vec<_>>().join(" "),
            PsValue::Table(_) => "System.Collections.Hashtable".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PsValue::{self, Array, Str};

    fn s(x: &str) -> PsValue {
        Str(x.to_owned())
    }

    #[test]
    fn arrays_are_built_as_powershell_builds_them() {
        // @() does not nest: one inner array is enumerated into the outer one.
        assert_eq!(
            PsValue::eval("@(@('CmFilter', 'cm-filter'))").unwrap(),
            Array(vec![s("CmFilter"), s("cm-filter")])
        );
        assert_eq!(
            PsValue::eval("@(@('a', 'b'), @('c', 'd'))").unwrap(),
            Array(vec![
                Array(vec![s("a"), s("b")]),
                Array(vec![s("c"), s("d")])
            ])
        );
        // The unary comma keeps a single pair a pair.
        assert_eq!(
            PsValue::eval("@(,@('a', 'b'))").unwrap(),
            Array(vec![Array(vec![s("a"), s("b")])])
        );
        assert_eq!(PsValue::eval("@()").unwrap(), Array(vec![]));
        assert_eq!(PsValue::eval("@('it''s')").unwrap(), Array(vec![s("it's")]));
        // Indexing a string gives a character.
        assert_eq!(s("CmFilter").index(0), s("C"));
        assert_eq!(PsValue::eval("@('x'").map(PsValue::items), None);
    }

    #[test]
    fn tables_are_read_with_their_entries() {
        let t = PsValue::eval("@{ Kind = 'registry'; Settle = 5; Names = @('a') }").unwrap();
        assert_eq!(t.get("kind"), Some(&s("registry")));
        assert_eq!(t.get("Settle"), Some(&s("5")));
        assert_eq!(t.get("Names"), Some(&Array(vec![s("a")])));
        assert_eq!(t.get("Other"), None);
        // @() does not enumerate a hashtable: one table stays one element.
        assert_eq!(PsValue::eval("@(@{ A = 'x' })").unwrap().items().len(), 1);
        assert_eq!(PsValue::eval("@{}").unwrap(), PsValue::Table(vec![]));
        assert_eq!(PsValue::eval("@{ = 'x' }"), None);
    }
}
