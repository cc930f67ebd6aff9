-- Ordinary analytic statements the query API must accept for every tenant (tests/unit/test_sql_guard.py).
-- Each entry starts with a line "--- <what it shows>" and runs to the next such line. Everything else is SQL,
-- comments included.

--- plain select with a named parameter
SELECT * FROM sales WHERE region = :region

--- aggregate with GROUP BY, HAVING, ORDER BY, LIMIT / OFFSET
SELECT region, SUM(amount) AS total, COUNT(*) AS n
FROM public.sales
GROUP BY region
HAVING SUM(amount) > 100
ORDER BY total DESC
LIMIT 10 OFFSET 20

--- CTEs, several and chained
WITH recent AS (
    SELECT * FROM sales WHERE sold_at > DATEADD(day, -30, GETDATE())
), by_region AS (
    SELECT region, SUM(amount) AS total FROM recent GROUP BY region
)
SELECT region, total FROM by_region ORDER BY total DESC

--- recursive CTE
WITH RECURSIVE org (id, manager_id, depth) AS (
    SELECT id, manager_id, 0 FROM employees WHERE manager_id IS NULL
    UNION ALL
    SELECT e.id, e.manager_id, o.depth + 1 FROM employees e JOIN org o ON e.manager_id = o.id
)
SELECT * FROM org

--- window functions: ranking, running totals, frames
SELECT
    region,
    sold_at,
    amount,
    ROW_NUMBER() OVER (PARTITION BY region ORDER BY sold_at) AS rn,
    RANK() OVER (ORDER BY amount DESC) AS rnk,
    SUM(amount) OVER (PARTITION BY region ORDER BY sold_at ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running,
    AVG(amount) OVER (PARTITION BY region ORDER BY sold_at ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS week_avg
FROM sales

--- LAG / LEAD / FIRST_VALUE / NTILE
SELECT id,
       LAG(amount, 1) OVER (ORDER BY id) AS prev,
       LEAD(amount) OVER (ORDER BY id) AS next,
       FIRST_VALUE(amount) OVER (PARTITION BY region ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS first,
       NTILE(4) OVER (ORDER BY amount) AS quartile
FROM sales

--- QUALIFY
SELECT id, region, amount
FROM sales
QUALIFY ROW_NUMBER() OVER (PARTITION BY region ORDER BY amount DESC) = 1

--- PIVOT
SELECT *
FROM (SELECT region, quarter, amount FROM sales)
PIVOT (SUM(amount) FOR quarter IN ('Q1', 'Q2', 'Q3', 'Q4'))

--- PIVOT with aliases
SELECT * FROM (SELECT partname, price FROM part) PIVOT (AVG(price) AS avg_price FOR partname IN ('P1' AS p1, 'P2' AS p2))

--- UNPIVOT
SELECT *
FROM (SELECT red, green, blue FROM count_by_color)
UNPIVOT (cnt FOR color IN (red, green, blue))

--- LISTAGG WITHIN GROUP
SELECT region, LISTAGG(DISTINCT item, ', ') WITHIN GROUP (ORDER BY item) AS items
FROM sales
GROUP BY region

--- SUPER navigation with an array index
SELECT c.payload.items[0].name AS first_item, c.payload."customer id" AS customer
FROM events c
WHERE c.payload.kind = 'order'

--- SUPER unnesting in FROM (PartiQL)
SELECT o.id, i.sku, i.qty
FROM orders o, o.payload.items AS i
WHERE i.qty > 1

--- SUPER: JSON_PARSE, IS_VALID_JSON, JSON_EXTRACT_PATH_TEXT
SELECT JSON_PARSE(raw) AS doc, JSON_EXTRACT_PATH_TEXT(raw, 'a', 'b') AS ab
FROM landing
WHERE IS_VALID_JSON(raw)

--- TOP
SELECT TOP 10 * FROM sales ORDER BY amount DESC

--- keywords inside strings
SELECT 'DROP TABLE sales; GRANT ALL ON sales TO PUBLIC; SET ROLE admin' AS harmless

--- keywords inside quoted identifiers
SELECT "delete", "drop", "grant", "set_config" FROM "insert"."update"

--- a string that mentions set_config is still a string
SELECT id FROM audit WHERE note LIKE '%set_config(''role''%'

--- doubled quotes and backslash escapes in strings
SELECT 'it''s', 'semi;colon', 'back\\slash' AS s

--- comments, line and block, with statement-looking text in them
-- DROP TABLE sales;
SELECT /* ; DELETE FROM sales; */ 1 AS one -- ; SET ROLE admin

--- a comment before the statement and a trailing semicolon
/* nightly report */
SELECT COUNT(*) FROM sales;

--- APPROXIMATE COUNT(DISTINCT)
SELECT APPROXIMATE COUNT(DISTINCT customer_id) AS customers FROM sales

--- APPROXIMATE PERCENTILE_DISC and MEDIAN
SELECT MEDIAN(amount) AS med, APPROXIMATE PERCENTILE_DISC(0.9) WITHIN GROUP (ORDER BY amount) AS p90 FROM sales

--- PERCENTILE_CONT WITHIN GROUP
SELECT region, PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY amount) AS median_amount FROM sales GROUP BY region

--- DATEADD / DATEDIFF / DATE_TRUNC / EXTRACT
SELECT DATEADD(month, 1, sold_at) AS next_month,
       DATEDIFF(day, sold_at, GETDATE()) AS age_days,
       DATE_TRUNC('week', sold_at) AS week,
       EXTRACT(year FROM sold_at) AS y
FROM sales

--- CONVERT_TIMEZONE and SYSDATE
SELECT CONVERT_TIMEZONE('UTC', 'Europe/Paris', sold_at) AS local_time, SYSDATE AS now FROM sales

--- CASE, searched and simple
SELECT id,
       CASE WHEN amount > 100 THEN 'big' WHEN amount > 10 THEN 'medium' ELSE 'small' END AS size,
       CASE region WHEN 'eu' THEN 1 WHEN 'us' THEN 2 ELSE 0 END AS code
FROM sales

--- nested CASE inside an aggregate
SELECT SUM(CASE WHEN status = 'paid' THEN CASE WHEN amount > 0 THEN amount ELSE 0 END ELSE 0 END) AS paid FROM invoices

--- DECODE, NVL, NVL2, COALESCE, NULLIF
SELECT DECODE(region, 'eu', 'Europe', 'us', 'America', 'Other') AS r,
       NVL(discount, 0), NVL2(discount, 'yes', 'no'), COALESCE(a, b, c), NULLIF(a, 0)
FROM sales

--- UNION / UNION ALL
SELECT id FROM sales_2024 UNION SELECT id FROM sales_2025 UNION ALL SELECT id FROM sales_archive

--- INTERSECT and EXCEPT
(SELECT customer_id FROM sales INTERSECT SELECT customer_id FROM returns) EXCEPT SELECT customer_id FROM blocked

--- MINUS is Redshift for EXCEPT
SELECT customer_id FROM sales MINUS SELECT customer_id FROM returns

--- GROUP BY ROLLUP
SELECT region, product, SUM(amount) FROM sales GROUP BY ROLLUP (region, product)

--- GROUP BY CUBE
SELECT region, product, SUM(amount) FROM sales GROUP BY CUBE (region, product)

--- GROUP BY GROUPING SETS with GROUPING()
SELECT region, product, GROUPING(region) AS g, SUM(amount)
FROM sales
GROUP BY GROUPING SETS ((region, product), (region), ())

--- joins of every kind
SELECT *
FROM a
JOIN b ON a.id = b.a_id
LEFT JOIN c USING (id)
RIGHT OUTER JOIN d ON d.id = c.d_id
FULL OUTER JOIN e ON e.id = d.e_id
CROSS JOIN f

--- correlated subquery, EXISTS, IN, scalar subquery
SELECT s.id, (SELECT MAX(amount) FROM sales s2 WHERE s2.region = s.region) AS region_max
FROM sales s
WHERE EXISTS (SELECT 1 FROM returns r WHERE r.sale_id = s.id)
  AND s.customer_id IN (SELECT id FROM customers WHERE vip)
  AND s.region NOT IN ('test')

--- derived tables nested a few levels
SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT id, amount FROM sales) a) b) c WHERE amount > 0

--- casts, both spellings
SELECT CAST(amount AS DECIMAL(12, 2)), amount::float8, '2026-01-01'::date, id::varchar(20) FROM sales

--- string functions
SELECT SPLIT_PART(email, '@', 2) AS domain, LOWER(name), UPPER(name), INITCAP(name), TRIM(BOTH ' ' FROM name),
       SUBSTRING(name, 1, 3), LEFT(name, 2), RIGHT(name, 2), LEN(name), REPLACE(name, 'a', 'b'), name || '!' AS shout
FROM customers

--- regular expressions, LIKE, ILIKE, SIMILAR TO
SELECT REGEXP_SUBSTR(email, '[a-z]+'), REGEXP_REPLACE(phone, '[^0-9]', ''), REGEXP_COUNT(text, 'a')
FROM customers
WHERE email ILIKE '%@example.com' AND name LIKE 'A%' AND code SIMILAR TO '[0-9]{3}' AND email ~ '^[a-z]'

--- math functions
SELECT ROUND(amount, 2), CEIL(amount), FLOOR(amount), ABS(delta), POWER(2, 10), SQRT(16), LN(2), MOD(7, 3), RANDOM() FROM sales

--- RATIO_TO_REPORT and CUME_DIST
SELECT region, RATIO_TO_REPORT(amount) OVER (PARTITION BY region) AS share, CUME_DIST() OVER (ORDER BY amount) FROM sales

--- DISTINCT and COUNT DISTINCT
SELECT DISTINCT region FROM sales WHERE amount BETWEEN 10 AND 20

--- BOOL_AND / BOOL_OR aggregates and FILTER-free conditional counts
SELECT region, BOOL_OR(returned) AS any_returned, COUNT(CASE WHEN returned THEN 1 END) AS returns FROM sales GROUP BY 1

--- system views a tenant may read
SELECT "table", size, tbl_rows FROM svv_table_info WHERE "schema" = 'public'

--- current identity and settings, read only
SELECT CURRENT_USER, CURRENT_DATABASE(), CURRENT_SCHEMA(), current_setting('search_path')

--- EXPLAIN
EXPLAIN SELECT region, SUM(amount) FROM sales GROUP BY region

--- EXPLAIN VERBOSE
EXPLAIN VERBOSE SELECT * FROM sales WHERE id = 1

--- EXPLAIN after a comment
EXPLAIN /* plan only */ SELECT 1

--- SHOW TABLES
SHOW TABLES FROM SCHEMA dev.public

--- SHOW COLUMNS
SHOW COLUMNS FROM TABLE dev.public.sales

--- SHOW a setting
SHOW search_path

--- SHOW DATABASES / SCHEMAS
SHOW SCHEMAS FROM DATABASE dev

--- VALUES as a derived table
SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t (id, letter)

--- generate a calendar from a numbers CTE
WITH digits AS (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4)
SELECT DATEADD(day, a.d * 5 + b.d, '2026-01-01'::date) AS day FROM digits a CROSS JOIN digits b ORDER BY 1

--- window with named-free frame RANGE
SELECT id, SUM(amount) OVER (ORDER BY id RANGE UNBOUNDED PRECEDING) FROM sales

--- NULLS FIRST / LAST ordering
SELECT * FROM sales ORDER BY region ASC NULLS FIRST, amount DESC NULLS LAST

--- IS DISTINCT FROM, IS NULL, BETWEEN SYMMETRIC-free
SELECT * FROM sales WHERE region IS NOT NULL AND discount IS NULL AND a IS DISTINCT FROM b

--- INTERVAL arithmetic
SELECT sold_at + INTERVAL '1 day', sold_at - INTERVAL '3 hours', GETDATE() - sold_at AS age FROM sales

--- TO_CHAR / TO_DATE / TO_NUMBER
SELECT TO_CHAR(sold_at, 'YYYY-MM'), TO_DATE('2026-01-02', 'YYYY-MM-DD'), TO_NUMBER('12,454.8-', '99G999D9S')

--- pg_sleep is the warehouse's business (statement timeout), not the guard's
SELECT pg_sleep(1)

--- unicode, quoted mixed-case identifiers
SELECT "Größe", 'naïve café ☕' AS note FROM "Mixed"."CaseTable"

--- a long IN list as generated code writes it
SELECT * FROM sales WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30)

--- a long OR chain as generated code writes it
SELECT * FROM sales WHERE (region = 'a' AND amount > 1) OR (region = 'b' AND amount > 2) OR (region = 'c' AND amount > 3) OR (region = 'd' AND amount > 4)

--- parenthesized set operations with ORDER BY and LIMIT
(SELECT id FROM a ORDER BY id LIMIT 5) UNION ALL (SELECT id FROM b ORDER BY id LIMIT 5)

--- CTE feeding a window feeding QUALIFY-free filter
WITH ranked AS (SELECT *, DENSE_RANK() OVER (PARTITION BY region ORDER BY amount DESC) AS r FROM sales)
SELECT * FROM ranked WHERE r <= 3

--- array and object construction in SUPER
SELECT ARRAY(1, 2, 3) AS arr, OBJECT('a', 1, 'b', 2) AS obj, GET_ARRAY_LENGTH(ARRAY(1, 2)) AS n

--- HLL sketches
SELECT HLL(customer_id) AS approx_customers, HLL_CARDINALITY(HLL_CREATE_SKETCH(customer_id)) FROM sales

--- spatial functions
SELECT ST_Distance(ST_Point(0, 0), ST_Point(3, 4)) AS d, ST_AsText(ST_GeomFromText('POINT(1 2)'))

--- a three-part name reads from another database
SELECT * FROM other_db.public.shared_table LIMIT 5

--- SELECT with a lower-case everything and odd whitespace
select	id ,amount
from	sales
where	amount>0

--- ordering by position and aliases in GROUP BY
SELECT region AS r, COUNT(*) FROM sales GROUP BY r ORDER BY 2 DESC

--- a no-break space in comments and in a string is text, not a separator
SELECT 'a b' AS x -- note: fine
/* and　here /* nested */ too */
