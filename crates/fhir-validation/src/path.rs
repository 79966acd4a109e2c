//! The location of the element being walked, kept as borrowed segments and only rendered to
//! a string when an issue is reported: a valid resource costs no string building.

use std::fmt::Write;

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Name(&'a str),
    Index(usize),
}

#[derive(Debug, Default)]
pub(crate) struct Path<'a> {
    segments: Vec<Segment<'a>>,
}

impl<'a> Path<'a> {
    pub(crate) fn push_name(&mut self, name: &'a str) {
        self.segments.push(Segment::Name(name));
    }

    pub(crate) fn push_index(&mut self, index: usize) {
        self.segments.push(Segment::Index(index));
    }

    pub(crate) fn pop(&mut self) {
        self.segments.pop();
    }

    /// `Patient.name[0].given[1]`.
    pub(crate) fn render(&self) -> String {
        self.render_with(None)
    }

    /// The path of a child that is not walked (a missing or unknown element).
    pub(crate) fn render_with(&self, child: Option<&str>) -> String {
        let mut out = String::new();
        let names = self
            .segments
            .iter()
            .copied()
            .chain(child.map(Segment::Name));
        for segment in names {
            match segment {
                Segment::Name(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fhirpath_style() {
        let mut path = Path::default();
        assert_eq!(path.render_with(Some("resourceType")), "resourceType");
        path.push_name("Patient");
        path.push_name("name");
        path.push_index(0);
        path.push_name("given");
        path.push_index(1);
        assert_eq!(path.render(), "Patient.name[0].given[1]");
        path.pop();
        path.pop();
        assert_eq!(path.render_with(Some("_given")), "Patient.name[0]._given");
    }
}
