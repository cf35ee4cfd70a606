//! Race scenarios: parameters, a body across real processes, an oracle, a verdict.
