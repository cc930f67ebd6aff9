-- Writes a tenant flagged allow_writes may run in its own schema "owned" (tests/unit/test_sql_guard.py). A tenant
-- without the flag gets every one of them refused as read_only. Each entry starts with a line "--- <what>".

--- create a table
CREATE TABLE owned.daily (day date NOT NULL, region varchar(16), total decimal(14, 2))

--- create a table if it does not exist, with Redshift storage options
CREATE TABLE IF NOT EXISTS owned.facts (id bigint NOT NULL, note varchar(64) ENCODE zstd) BACKUP NO DISTSTYLE KEY DISTKEY (id) COMPOUND SORTKEY (id)

--- create a table like a shared one
CREATE TABLE owned.sales_copy (LIKE public.sales)

--- create table as select, reading a shared table
CREATE TABLE owned.big_sales AS SELECT * FROM public.sales WHERE amount > 100

--- create table as select with a CTE
CREATE TABLE owned.by_region AS WITH r AS (SELECT region, SUM(amount) AS total FROM public.sales GROUP BY region) SELECT * FROM r

--- create a view
CREATE VIEW owned.recent AS SELECT * FROM public.sales WHERE sold_at > DATEADD(day, -7, GETDATE())

--- create or replace a late-binding view
CREATE OR REPLACE VIEW owned.v AS SELECT id FROM public.sales WITH NO SCHEMA BINDING

--- create a view with a column list
CREATE VIEW owned.pairs (a, b) AS SELECT 1, 2

--- the schema name in upper case folds to the owned one
CREATE TABLE OWNED.upper_case (a int)

--- the schema name quoted in lower case is the owned one
INSERT INTO "owned"."quoted" VALUES (1)

--- insert values
INSERT INTO owned.daily (day, region, total) VALUES ('2026-01-01', 'eu', 10.5), ('2026-01-01', 'us', 7)

--- insert select from a shared table
INSERT INTO owned.daily SELECT sold_at::date, region, SUM(amount) FROM public.sales GROUP BY 1, 2

--- insert behind a CTE
WITH x AS (SELECT 1 AS id) INSERT INTO owned.ids SELECT id FROM x

--- update
UPDATE owned.daily SET total = 0 WHERE region = 'test'

--- update from a shared table
UPDATE owned.daily SET total = s.amount FROM public.sales s WHERE daily.region = s.region

--- delete
DELETE FROM owned.daily WHERE day < '2025-01-01'

--- delete using a shared table
DELETE FROM owned.daily USING public.blocked b WHERE daily.region = b.region

--- merge from a shared table
MERGE INTO owned.daily USING public.sales s ON daily.region = s.region WHEN MATCHED THEN UPDATE SET total = s.amount WHEN NOT MATCHED THEN INSERT VALUES (s.sold_at, s.region, s.amount)

--- merge with delete
MERGE INTO owned.daily USING owned.staging s ON daily.day = s.day WHEN MATCHED THEN DELETE

--- truncate
TRUNCATE owned.daily

--- truncate several owned tables
TRUNCATE TABLE owned.a, owned.b

--- select into an owned table
SELECT * INTO owned.snapshot FROM public.sales

--- drop a table
DROP TABLE owned.daily

--- drop several, if they exist
DROP TABLE IF EXISTS owned.a, owned.b

--- drop a view
DROP VIEW owned.v

--- add a column
ALTER TABLE owned.daily ADD COLUMN note varchar(32) DEFAULT 'n/a'

--- drop a column
ALTER TABLE owned.daily DROP COLUMN note

--- rename a column
ALTER TABLE owned.daily RENAME COLUMN total TO amount

--- rename the table, same schema
ALTER TABLE owned.daily RENAME TO daily_totals

--- rename the table, naming the owned schema
ALTER TABLE owned.daily RENAME TO owned.daily_totals

--- widen a column
ALTER TABLE owned.daily ALTER COLUMN region TYPE varchar(64)

--- change the distribution and the sort key
ALTER TABLE owned.daily ALTER DISTSTYLE EVEN

--- change the sort key
ALTER TABLE owned.daily ALTER SORTKEY (day)

--- add and drop a constraint
ALTER TABLE owned.daily ADD CONSTRAINT pk PRIMARY KEY (day, region)

--- drop a constraint
ALTER TABLE owned.daily DROP CONSTRAINT pk

--- explain a write
EXPLAIN INSERT INTO owned.daily SELECT * FROM owned.daily

--- create a table as Redshift prints its DDL (SHOW TABLE): design clauses sqlglot has no grammar for
CREATE TABLE owned.printed (id bigint IDENTITY(1, 1) ENCODE az64 DISTKEY, note varchar(64) ENCODE lzo SORTKEY) DISTSTYLE AUTO SORTKEY AUTO ENCODE AUTO

--- an interleaved sort key
CREATE TABLE owned.interleaved (a int, b int) INTERLEAVED SORTKEY (a, b)

--- change a column's compression
ALTER TABLE owned.daily ALTER COLUMN region ENCODE zstd, ALTER COLUMN total ENCODE az64

--- let Redshift choose the compression again
ALTER TABLE owned.daily ALTER ENCODE AUTO

--- insert the defaults
INSERT INTO owned.daily DEFAULT VALUES

--- every column attribute and table constraint Redshift has
CREATE TABLE owned.keyed (id int NOT NULL DEFAULT 1 UNIQUE PRIMARY KEY REFERENCES owned.daily (id) ENCODE az64 DISTKEY, code varchar(4) NULL COLLATE case_insensitive, n int CONSTRAINT n_set NOT NULL, PRIMARY KEY (id), UNIQUE (code), FOREIGN KEY (n) REFERENCES owned.daily (id), CONSTRAINT one_code UNIQUE (code))

--- a table from a query, its columns named
CREATE TABLE owned.named (day, total) AS SELECT day, total FROM owned.daily

--- add a column with a default and an encoding, and a constraint
ALTER TABLE owned.daily ADD COLUMN note varchar(32) DEFAULT 'none' ENCODE zstd

--- change the compression of a column named like a type
ALTER TABLE owned.daily ALTER COLUMN date ENCODE az64
