-- Whether a stage proved it tested the artifact: `verified`, or `unverified: <reason>`
-- (the probe after the command found the package imported from somewhere else, or could
-- not look). NULL: reported without a check (by `kiln report`, or before this column).
ALTER TABLE stage_results ADD COLUMN artifact TEXT;
