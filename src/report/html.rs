//! Not built yet: the HTML report (issue 8).
