//! Salesforce org emulator.
