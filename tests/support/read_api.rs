//! The Salesforce API an org's call-time reads go through (`api="rest|soap"`), for tests that
//! run once per API.

use super::fixture::Options;

/// The API an org's lookups go through: every lookup test runs against both.
#[derive(Debug, Clone, Copy)]
pub enum Api {
    Rest,
    Soap,
}

impl Api {
    pub fn options(self) -> Options {
        Options {
            org_attrs: match self {
                Api::Rest => String::new(),
                Api::Soap => r#"api="soap""#.into(),
            },
            ..Options::default()
        }
    }

    /// The emulator's name for the lookup's search endpoint.
    pub fn search_endpoint(self) -> &'static str {
        match self {
            Api::Rest => "search",
            Api::Soap => "soap_search",
        }
    }

    /// The emulator's query-log kind of a SOQL query.
    pub fn soql_kind(self) -> &'static str {
        match self {
            Api::Rest => "soql",
            Api::Soap => "soap_soql",
        }
    }

    /// The emulator's query-log kind of the lookup's search.
    pub fn sosl_kind(self) -> &'static str {
        match self {
            Api::Rest => "sosl",
            Api::Soap => "soap_sosl",
        }
    }

    /// Where the lookup's search is sent (for faults injected on it).
    pub fn read_path(self) -> &'static str {
        match self {
            Api::Rest => "/services/data",
            Api::Soap => "/services/Soap",
        }
    }
}

/// Runs each named test once per API, as `rest::<name>` and `soap::<name>`.
#[macro_export]
macro_rules! for_both_apis {
    ($($test:ident),* $(,)?) => {
        mod rest {
            $(#[test]
            fn $test() {
                super::$test($crate::support::read_api::Api::Rest)
            })*
        }
        mod soap {
            $(#[test]
            fn $test() {
                super::$test($crate::support::read_api::Api::Soap)
            })*
        }
    };
}
