-- lock an ad-hoc query session (`lensflow query sql`): no file system access at all (no COPY ... TO,
-- ATTACH, read_csv of arbitrary files, extension installs), and no way to switch it back on.
set enable_external_access = false;
set lock_configuration = true;
