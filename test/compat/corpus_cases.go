package compat

func buildCorpus() []Case {
	b := &corpusBuilder{}

	b.section("Single-shard statements (key equality)")
	b.ok(
		"SELECT id, name, email FROM users WHERE id = 42",
		"SELECT * FROM users WHERE id = 7",
		"SELECT * FROM posts WHERE author_id = 42 ORDER BY id",
		"SELECT count(*), max(like_count) FROM posts WHERE author_id = 42",
		"SELECT follower_id, followee_id FROM follows WHERE follower_id = 10 ORDER BY followee_id",
		"SELECT p.id, p.body, c.id, c.body FROM posts p JOIN comments c ON c.post_author_id = p.author_id AND c.post_id = p.id WHERE p.author_id = 12 ORDER BY p.id, c.id",
		"SELECT u.name, cn.name FROM users u LEFT JOIN countries cn ON cn.code = u.country_code WHERE u.id = 99",
		"SELECT author_id, avg(like_count), string_agg(body, '|' ORDER BY id) FROM posts WHERE author_id = 33 GROUP BY author_id",
		"SELECT * FROM likes WHERE post_author_id = 5 ORDER BY post_id, user_id",
		"SELECT id, row_number() OVER (ORDER BY created_at, id) FROM posts WHERE author_id = 21 ORDER BY id",
		"SELECT id FROM users WHERE id = 100 AND active",
		"SELECT * FROM emails WHERE email = 'user5@example.org'",
		"SELECT user_id FROM emails WHERE email = 'nobody@example.com'",
		"SELECT DISTINCT followee_id % 7 FROM follows WHERE follower_id = 3 ORDER BY 1",
		"SELECT count(*) FROM comments WHERE post_author_id = 8 AND author_id <> 8",
	)
	b.args("SELECT id, name FROM users WHERE id = $1", "17")
	b.args("SELECT id, body FROM posts WHERE author_id = $1 ORDER BY id LIMIT $2", "40", "2")
	b.args("SELECT count(*) FROM likes WHERE post_author_id = $1", "77")

	b.section("Reference table")
	b.ok(
		"SELECT * FROM countries ORDER BY code",
		"SELECT continent, count(*), sum(population) FROM countries GROUP BY continent ORDER BY continent",
		"SELECT code FROM countries WHERE population IS NULL ORDER BY code",
		"SELECT name FROM countries WHERE code IN ('DE', 'FR', 'JP') ORDER BY name DESC",
		"SELECT count(DISTINCT continent) FROM countries",
	)

	b.section("Scatter without merge (concatenated rows)")
	b.ok(
		"SELECT id, name FROM users",
		"SELECT * FROM users",
		"SELECT id, karma FROM users WHERE karma > 5000",
		"SELECT id FROM users WHERE country_code IS NULL",
		"SELECT id, email FROM users WHERE email LIKE '%.org' AND active",
		"SELECT author_id, id, body FROM posts WHERE body LIKE 'hello%'",
		"SELECT id, upper(name), length(email), karma * 2, rating / 2 FROM users WHERE level > 7",
		"SELECT id, birthday, wake_up, last_login, created_at, session_len FROM users WHERE id % 10 = 3",
		"SELECT id, external_id, avatar FROM users WHERE avatar IS NOT NULL AND id < 40",
		"SELECT id, flags, level::int2, level::numeric / 3 FROM users WHERE flags < -90",
		"SELECT post_author_id, post_id, user_id FROM likes WHERE user_id = 13",
		"SELECT follower_id FROM follows WHERE followee_id = 42",
		"SELECT * FROM comments WHERE author_id = 99",
		"SELECT id, CASE WHEN karma IS NULL THEN 'none' WHEN karma < 0 THEN 'neg' ELSE 'pos' END FROM users",
		"SELECT id FROM users WHERE id IN (3, 17, 25, 99, 140, 299)",
		"SELECT id FROM users WHERE id = ANY('{1,2,3,250}'::bigint[])",
		"SELECT id FROM users WHERE id BETWEEN 10 AND 30",
		"SELECT id FROM users WHERE false",
		"SELECT id, name FROM users WHERE name = 'Dup Name'",
		"SELECT * FROM posts WHERE score IS NULL",
		"SELECT author_id, id, coalesce(score, -1) FROM posts WHERE like_count = 0",
		"SELECT id, created_at AT TIME ZONE 'UTC' FROM users WHERE id < 20",
		"SELECT id, date_trunc('month', last_login) FROM users WHERE last_login IS NOT NULL AND id > 280",
		"SELECT id, extract(year FROM birthday) FROM users WHERE birthday < '1960-01-01'",
		"SELECT u.id, u.name, p.id FROM users u JOIN posts p ON p.author_id = u.id WHERE p.like_count > 45",
	)
	b.args("SELECT id, name FROM users WHERE level = $1", "3")
	b.args("SELECT id FROM users WHERE karma > $1 AND active = $2", "1000", "true")
	b.args("SELECT id FROM users WHERE id = ANY($1::bigint[])", "{5,6,7,8,9,200}")

	b.section("ORDER BY and LIMIT across shards")
	b.ok(
		"SELECT id, name FROM users ORDER BY id",
		"SELECT id, name FROM users ORDER BY id DESC",
		"SELECT id, name FROM users ORDER BY name, id",
		"SELECT id, name FROM users ORDER BY name DESC, id DESC",
		"SELECT id, email FROM users ORDER BY email",
		"SELECT id, karma FROM users ORDER BY karma, id",
		"SELECT id, karma FROM users ORDER BY karma DESC, id",
		"SELECT id, karma FROM users ORDER BY karma NULLS FIRST, id",
		"SELECT id, karma FROM users ORDER BY karma DESC NULLS LAST, id",
		"SELECT id, rating FROM users ORDER BY rating, id",
		"SELECT id, rating FROM users ORDER BY rating DESC NULLS LAST, id",
		"SELECT id, active FROM users ORDER BY active, id",
		"SELECT id, birthday FROM users ORDER BY birthday, id",
		"SELECT id, wake_up FROM users ORDER BY wake_up DESC, id",
		"SELECT id, last_login FROM users ORDER BY last_login NULLS FIRST, id",
		"SELECT id, created_at FROM users ORDER BY created_at DESC",
		"SELECT id, session_len FROM users ORDER BY session_len, id",
		"SELECT id, external_id FROM users ORDER BY external_id",
		"SELECT id, avatar FROM users ORDER BY avatar, id",
		"SELECT id, flags FROM users ORDER BY flags, id",
		"SELECT id, level FROM users ORDER BY level DESC, id",
		"SELECT id, country_code FROM users ORDER BY country_code NULLS FIRST, id",
		"SELECT author_id, id, score FROM posts ORDER BY score DESC NULLS LAST, id",
		"SELECT id, name FROM users ORDER BY id LIMIT 10",
		"SELECT id, name FROM users ORDER BY id DESC LIMIT 10",
		"SELECT id, name FROM users ORDER BY id LIMIT 10 OFFSET 25",
		"SELECT id, name FROM users ORDER BY id OFFSET 290",
		"SELECT id FROM users ORDER BY id LIMIT 0",
		"SELECT id FROM users ORDER BY id LIMIT ALL",
		"SELECT id FROM users ORDER BY id OFFSET 1000",
		"SELECT id, name FROM users ORDER BY id FETCH FIRST 5 ROWS ONLY",
		"SELECT id, name FROM users ORDER BY id OFFSET 3 ROWS FETCH NEXT 4 ROWS ONLY",
		"SELECT id FROM users ORDER BY karma DESC NULLS LAST, id LIMIT 15",
		"SELECT name FROM users ORDER BY id LIMIT 12",
		"SELECT email FROM users ORDER BY karma NULLS LAST, id DESC LIMIT 7",
		"SELECT id, length(name) FROM users ORDER BY length(name) DESC, id LIMIT 20",
		"SELECT id FROM users ORDER BY lower(name), id LIMIT 20",
		"SELECT id, karma FROM users ORDER BY karma * -1 NULLS LAST, id LIMIT 10",
		"SELECT author_id, id, like_count FROM posts ORDER BY like_count DESC, id LIMIT 25",
		"SELECT author_id, id FROM posts ORDER BY created_at, id LIMIT 30",
		"SELECT author_id, id, created_at FROM posts WHERE like_count > 10 ORDER BY created_at DESC LIMIT 20",
		"SELECT post_author_id, post_id, id FROM comments ORDER BY id DESC LIMIT 50",
		"SELECT post_author_id, post_id, user_id FROM likes ORDER BY post_id, user_id LIMIT 40",
		"SELECT follower_id, followee_id FROM follows ORDER BY followee_id, follower_id LIMIT 40",
		"SELECT id, name AS n FROM users ORDER BY n, id LIMIT 8",
		"SELECT id, name FROM users ORDER BY 2, 1 LIMIT 8",
		"SELECT id FROM users WHERE country_code = 'DE' ORDER BY id",
		"SELECT u.id, u.name, p.id, p.body FROM users u JOIN posts p ON p.author_id = u.id ORDER BY p.id LIMIT 30",
		"SELECT u.id, c.name FROM users u JOIN countries c ON c.code = u.country_code ORDER BY c.name, u.id LIMIT 30",
		"SELECT id, name FROM users ORDER BY created_at, id LIMIT 5",
		"SELECT id, session_len FROM users ORDER BY session_len DESC NULLS LAST, id LIMIT 12",
		"SELECT id, external_id FROM users ORDER BY external_id DESC LIMIT 9",
	)
	b.args("SELECT id, name FROM users ORDER BY id LIMIT $1", "6")
	b.args("SELECT id, name FROM users ORDER BY id LIMIT $1 OFFSET $2", "6", "100")
	b.args("SELECT id FROM users WHERE level >= $1 ORDER BY karma NULLS FIRST, id LIMIT $2", "5", "11")
	b.args("SELECT author_id, id FROM posts WHERE like_count < $1 ORDER BY id DESC FETCH FIRST 5 ROWS ONLY", "3")

	b.section("Aggregates across shards")
	b.ok(
		"SELECT count(*) FROM users",
		"SELECT count(*) FROM posts",
		"SELECT count(*) FROM comments",
		"SELECT count(*) FROM likes",
		"SELECT count(*) FROM follows",
		"SELECT count(karma), count(rating), count(birthday) FROM users",
		"SELECT count(*) FROM users WHERE id < 0",
		"SELECT sum(karma) FROM users",
		"SELECT sum(level), sum(flags) FROM users",
		"SELECT sum(like_count) FROM posts",
		"SELECT sum(karma) FROM users WHERE id < 0",
		"SELECT min(id), max(id) FROM users",
		"SELECT min(karma), max(karma) FROM users",
		"SELECT min(name), max(name) FROM users",
		"SELECT min(email), max(email) FROM users",
		"SELECT min(birthday), max(birthday) FROM users",
		"SELECT min(wake_up), max(wake_up) FROM users",
		"SELECT min(last_login), max(last_login) FROM users",
		"SELECT min(created_at), max(created_at) FROM users",
		"SELECT min(session_len), max(session_len) FROM users",
		"SELECT min(rating), max(rating) FROM users",
		"SELECT min(score), max(score) FROM posts",
		"SELECT min(flags), max(flags), min(level), max(level) FROM users",
		"SELECT max(id) FROM users WHERE id < 0",
		"SELECT avg(karma) FROM users",
		"SELECT avg(level) FROM users",
		"SELECT avg(flags) FROM users",
		"SELECT avg(like_count) FROM posts",
		"SELECT avg(id) FROM users",
		"SELECT avg(karma) FROM users WHERE id < 0",
		"SELECT bool_and(active), bool_or(active) FROM users",
		"SELECT bool_and(karma > -6000), bool_or(karma > 14000) FROM users",
		"SELECT every(level < 10) FROM users",
		"SELECT count(DISTINCT country_code) FROM users",
		"SELECT count(DISTINCT author_id) FROM posts",
		"SELECT sum(DISTINCT level) FROM users",
		"SELECT avg(DISTINCT level) FROM users",
		// Several DISTINCT arguments: the shards group by all of them, each aggregate counts its own.
		"SELECT count(DISTINCT level), count(DISTINCT active) FROM users",
		"SELECT count(DISTINCT user_id), count(DISTINCT post_author_id), avg(DISTINCT post_id), count(*) FROM likes",
		"SELECT round(count(DISTINCT author_id)::numeric / count(DISTINCT like_count), 3) FROM posts",
		"SELECT string_agg(name, ',' ORDER BY id) FROM users WHERE id < 30",
		"SELECT array_agg(id ORDER BY id) FROM users WHERE level = 0",
		"SELECT jsonb_agg(id ORDER BY id) FROM users WHERE level = 0",
		"SELECT jsonb_agg(u ORDER BY id) FROM users u WHERE id < 12",
		"SELECT count(*), sum(karma), min(karma), max(karma), avg(karma) FROM users WHERE active",
		"SELECT count(*) AS n, max(created_at) AS latest FROM posts",
		"SELECT count(*) FROM users u JOIN posts p ON p.author_id = u.id",
		"SELECT count(*) FROM posts p JOIN comments c ON c.post_author_id = p.author_id AND c.post_id = p.id",
		"SELECT sum(p.like_count) FROM users u JOIN posts p ON p.author_id = u.id WHERE u.country_code = 'US'",
		"SELECT count(*) FROM users u JOIN countries c ON c.code = u.country_code WHERE c.continent = 'Europe'",
		"SELECT count(*) FILTER (WHERE active), count(*) FILTER (WHERE NOT active) FROM users",
	)
	b.args("SELECT count(*), sum(id), avg(id) FROM users WHERE id > $1", "10")
	b.args("SELECT max(like_count) FROM posts WHERE created_at < $1", "2024-01-20 00:00:00+00")

	b.section("GROUP BY and HAVING across shards")
	b.ok(
		"SELECT country_code, count(*) FROM users GROUP BY country_code ORDER BY country_code",
		"SELECT country_code, count(*) FROM users GROUP BY country_code",
		"SELECT country_code, count(*) FROM users GROUP BY country_code ORDER BY count(*) DESC, country_code",
		"SELECT country_code, count(*) AS n FROM users GROUP BY country_code ORDER BY n DESC, country_code NULLS FIRST",
		"SELECT level, sum(karma), avg(karma), min(karma), max(karma) FROM users GROUP BY level ORDER BY level",
		"SELECT active, count(*), avg(level) FROM users GROUP BY active ORDER BY active",
		"SELECT level, active, count(*) FROM users GROUP BY level, active ORDER BY level, active",
		"SELECT level, count(*) FROM users GROUP BY level HAVING count(*) > 30 ORDER BY level",
		"SELECT level, count(*) FROM users GROUP BY level HAVING count(*) > 30",
		"SELECT country_code, sum(karma) FROM users GROUP BY country_code HAVING sum(karma) > 10000 ORDER BY 1",
		"SELECT country_code, max(karma) FROM users GROUP BY country_code HAVING min(karma) < -4000 ORDER BY country_code",
		"SELECT level FROM users GROUP BY level HAVING avg(karma) > 2000 ORDER BY level",
		"SELECT author_id, count(*) FROM posts GROUP BY author_id ORDER BY author_id",
		"SELECT author_id, count(*), max(like_count) FROM posts GROUP BY author_id ORDER BY count(*) DESC, author_id LIMIT 10",
		"SELECT author_id, sum(like_count) FROM posts GROUP BY author_id HAVING sum(like_count) > 150 ORDER BY author_id",
		"SELECT followee_id, count(*) FROM follows GROUP BY followee_id ORDER BY count(*) DESC, followee_id LIMIT 10",
		"SELECT followee_id, count(*) FROM follows GROUP BY followee_id HAVING count(*) >= 8 ORDER BY followee_id",
		"SELECT user_id, count(*) FROM likes GROUP BY user_id ORDER BY 2 DESC, 1 LIMIT 10",
		"SELECT author_id, count(*) FROM comments GROUP BY author_id ORDER BY count(*) DESC, author_id LIMIT 5",
		"SELECT level % 3, count(*) FROM users GROUP BY level % 3 ORDER BY 1",
		"SELECT date_trunc('day', created_at) AS day, count(*) FROM posts GROUP BY 1 ORDER BY 1",
		"SELECT extract(month FROM birthday) AS m, count(*) FROM users GROUP BY m ORDER BY m NULLS FIRST",
		"SELECT length(body), count(*) FROM posts GROUP BY length(body) ORDER BY length(body)",
		"SELECT upper(country_code), count(*) FROM users GROUP BY upper(country_code) ORDER BY 1 NULLS LAST",
		"SELECT country_code, string_agg(name, ';' ORDER BY id) FROM users GROUP BY country_code ORDER BY country_code",
		"SELECT level, array_agg(id ORDER BY id) FROM users GROUP BY level ORDER BY level",
		// Arrays as sort keys (element by element, a NULL element largest, then the shorter first).
		"SELECT level, array_agg(id ORDER BY id) AS ids FROM users WHERE id < 60 GROUP BY level ORDER BY ids DESC",
		"SELECT active, level, array_agg(country_code ORDER BY id) FROM users WHERE id < 80 GROUP BY active, level ORDER BY 3, 1, 2",
		"SELECT country_code, array_agg(level ORDER BY id) FROM users GROUP BY country_code ORDER BY 2 DESC, 1 NULLS FIRST LIMIT 6",
		"SELECT max(ARRAY[level, flags]), min(ARRAY[level, flags]) FROM users",
		"SELECT level, jsonb_agg(name ORDER BY id DESC) FROM users GROUP BY level ORDER BY level",
		"SELECT level, bool_and(active), bool_or(active) FROM users GROUP BY level ORDER BY level",
		"SELECT level, count(DISTINCT country_code) FROM users GROUP BY level ORDER BY level",
		"SELECT country_code, count(DISTINCT level), count(DISTINCT active), count(*), sum(karma), max(id) FROM users GROUP BY country_code ORDER BY country_code NULLS FIRST",
		"SELECT level FROM users GROUP BY level HAVING count(DISTINCT country_code) > 3 * count(DISTINCT active) ORDER BY level",
		"SELECT active, sum(DISTINCT level), count(DISTINCT country_code) AS c FROM users GROUP BY active ORDER BY c DESC, active",
		"SELECT country_code, count(*) FROM users GROUP BY country_code ORDER BY country_code LIMIT 5",
		"SELECT country_code, count(*) FROM users GROUP BY country_code ORDER BY country_code LIMIT 5 OFFSET 5",
		"SELECT c.continent, count(*) FROM users u JOIN countries c ON c.code = u.country_code GROUP BY c.continent ORDER BY c.continent",
		"SELECT u.country_code, count(p.id) FROM users u LEFT JOIN posts p ON p.author_id = u.id GROUP BY u.country_code ORDER BY 1 NULLS FIRST",
		"SELECT u.id, count(p.id) FROM users u LEFT JOIN posts p ON p.author_id = u.id GROUP BY u.id ORDER BY count(p.id) DESC, u.id LIMIT 10",
		"SELECT u.id, u.name, count(*) FROM users u JOIN follows f ON f.follower_id = u.id GROUP BY u.id, u.name ORDER BY 3 DESC, 1 LIMIT 10",
		"SELECT id, count(*) FROM users GROUP BY id HAVING count(*) > 1",
		"SELECT active, level, max(karma) FROM users GROUP BY active, level HAVING max(karma) IS NOT NULL ORDER BY 1, 2",
		"SELECT level, count(*) FILTER (WHERE active) FROM users GROUP BY level ORDER BY level",
		"SELECT continent, count(*) FROM countries GROUP BY continent ORDER BY 2 DESC, 1",
		"SELECT flags / 50, min(flags), max(flags) FROM users GROUP BY flags / 50 ORDER BY 1",
		"SELECT active, min(created_at), max(last_login) FROM users GROUP BY active ORDER BY active",
		"SELECT level, min(session_len), max(session_len) FROM users GROUP BY level ORDER BY level",
		"SELECT level, min(wake_up), max(birthday) FROM users GROUP BY level ORDER BY level",
	)
	// Parameters in HAVING: the merge compares the groups with the Bind value.
	b.args("SELECT level, count(*) FROM users WHERE karma > $1 GROUP BY level HAVING count(*) > $2 ORDER BY level", "0", "12")
	b.args("SELECT country_code, sum(karma) FROM users GROUP BY country_code HAVING sum(karma) > $1 OR min(karma) < $2 ORDER BY 1", "10000", "-4500")
	b.args("SELECT level FROM users GROUP BY level HAVING avg(karma) > $1 ORDER BY level", "1999.5")
	b.args("SELECT author_id, count(*) FROM posts WHERE author_id = $1 GROUP BY author_id HAVING count(*) >= $2", "40", "1")
	b.args("SELECT country_code, count(*) FROM users GROUP BY country_code HAVING count(*) <> $1 AND max(rating) > $2 ORDER BY 1 NULLS FIRST", "10", "0.5")

	// aggexpr: expressions over aggregates and the variance family; the
	// proxy merges the partials, PostgreSQL evaluates the expressions.
	b.section("Expressions over aggregates and stddev/variance across shards")
	b.ok(
		"SELECT sum(like_count) * 2 FROM posts",
		"SELECT round(avg(karma), 1) FROM users",
		"SELECT count(*) + 1 FROM users",
		"SELECT avg(length(body))::numeric(10,4) FROM posts",
		"SELECT count(*) + 1, sum(karma) / count(*), max(karma) - min(karma) FROM users WHERE id < 0",
		"SELECT coalesce(sum(karma), 0), count(karma) * 100 / count(*) FROM users",
		"SELECT 100.0 * count(*) FILTER (WHERE active) / count(*) AS pct_active FROM users",
		"SELECT round(avg(rating)::numeric, 3), round(avg(score)::numeric, 2) FROM users, posts WHERE posts.author_id = users.id",
		"SELECT stddev(karma), variance(karma), stddev_pop(karma), var_pop(karma), stddev_samp(karma), var_samp(karma) FROM users",
		"SELECT stddev(level), variance(level), var_pop(flags), stddev_pop(flags), stddev(id) FROM users",
		"SELECT stddev(like_count), variance(like_count), stddev(length(body)) FROM posts",
		"SELECT stddev(karma), variance(level), var_pop(karma) FROM users WHERE id < 0",
		"SELECT id % 1000, stddev(karma), var_pop(karma), stddev_pop(level) FROM users GROUP BY id % 1000 ORDER BY 1 LIMIT 5",
		"SELECT level, round(avg(karma), 2) AS avg_karma, round(stddev(karma), 2), count(*) * level FROM users GROUP BY level ORDER BY level",
		"SELECT country_code, count(*) * 2 AS twice FROM users GROUP BY country_code ORDER BY twice DESC, country_code NULLS FIRST LIMIT 5",
		"SELECT level, max(karma) - min(karma) AS spread FROM users GROUP BY level HAVING max(karma) - min(karma) > 1000 ORDER BY spread DESC",
		"SELECT level FROM users GROUP BY level HAVING count(*) BETWEEN 20 AND 40 ORDER BY level",
		"SELECT level, count(*) FROM users GROUP BY level HAVING sum(karma) > 2 * avg(karma) * 10 ORDER BY 1",
		"SELECT active, stddev(karma) FROM users GROUP BY active ORDER BY stddev(karma) DESC",
		"SELECT author_id, stddev(like_count) FROM posts GROUP BY author_id ORDER BY 2 DESC NULLS LAST, 1 LIMIT 5",
		"SELECT date_trunc('day', created_at) AS day, count(*) * 1.0 / count(DISTINCT author_id) FROM posts GROUP BY 1 ORDER BY 1",
		"SELECT level % 3, sum(flags) * (level % 3) FROM users GROUP BY level % 3 ORDER BY 1",
		"SELECT DISTINCT count(*) % 2 FROM users GROUP BY level ORDER BY 1",
		"SELECT length(body) / 100 AS bucket, round(avg(like_count), 3), stddev_pop(like_count) FROM posts GROUP BY 1 ORDER BY 1 LIMIT 4 OFFSET 1",
		"SELECT c.continent, round(avg(u.karma), 2), stddev(u.level) FROM users u JOIN countries c ON c.code = u.country_code GROUP BY c.continent ORDER BY 1",
		"SELECT level, variance(karma) FROM users GROUP BY level ORDER BY variance(karma) DESC NULLS LAST, level LIMIT 3",
		"BEGIN",
		"UPDATE users SET karma = karma + 1000 WHERE id = 5",
		"SELECT round(sum(karma) / 3, 4), stddev(karma) FROM users",
		"ROLLBACK",
		"SELECT id FROM users WHERE karma > (SELECT avg(karma) + 2 * stddev(karma) FROM users) ORDER BY id",
		"BEGIN",
		"INSERT INTO countries (code, name, continent, population) SELECT 'V' || level, 'Spread ' || level, 'Nowhere2', round(stddev(karma) * 100)::bigint FROM users GROUP BY level ON CONFLICT DO NOTHING",
		"SELECT code, population FROM countries WHERE continent = 'Nowhere2' ORDER BY code",
		"ROLLBACK",
	)
	b.args("SELECT round(avg(karma), $1) FROM users WHERE level > $2", "2", "3")
	b.args("SELECT level, count(*) * $1 FROM users GROUP BY level HAVING count(*) + $2 > 40 ORDER BY level", "3", "10")
	b.args("SELECT stddev(karma), count(*) - $2 FROM users WHERE level = $1", "4", "1")
	b.fails(
		"SELECT 100 / (count(*) - count(*)) FROM users",
		"SELECT sum(count(*)) + 1 FROM users",
		"SELECT stddev(name) FROM users",
	)
	b.refused("stddev/variance of double precision or real values across shards cannot reproduce PostgreSQL's float accumulation; cast the argument to numeric (stddev(x::numeric)) or compute it on one shard",
		"SELECT stddev(rating) FROM users",
		"SELECT round(var_pop(score)::numeric, 2) FROM posts",
	)
	b.refused("a subquery inside an expression over aggregates is not evaluated across shards; select the subquery's value separately",
		"SELECT count(*) + (SELECT count(*) FROM countries) FROM users",
	)

	b.section("DISTINCT and DISTINCT ON across shards")
	b.ok(
		"SELECT DISTINCT country_code FROM users ORDER BY country_code",
		"SELECT DISTINCT country_code FROM users",
		"SELECT DISTINCT level FROM users ORDER BY level DESC",
		"SELECT DISTINCT level, active FROM users ORDER BY level, active",
		"SELECT DISTINCT active FROM users",
		"SELECT DISTINCT author_id FROM comments ORDER BY author_id LIMIT 20",
		"SELECT DISTINCT followee_id FROM follows ORDER BY followee_id",
		"SELECT DISTINCT user_id FROM likes WHERE post_id < 100 ORDER BY user_id",
		"SELECT DISTINCT length(body) FROM posts ORDER BY 1",
		"SELECT DISTINCT name FROM users WHERE name = 'Dup Name'",
		"SELECT DISTINCT ON (level) level, id, name FROM users ORDER BY level, id",
		"SELECT DISTINCT ON (level) level, id FROM users ORDER BY level, karma DESC NULLS LAST, id",
		"SELECT DISTINCT ON (country_code) country_code, id FROM users ORDER BY country_code, id DESC",
		"SELECT DISTINCT ON (author_id) author_id, id, like_count FROM posts ORDER BY author_id, like_count DESC, id",
		"SELECT DISTINCT ON (active) active, id FROM users ORDER BY active, created_at DESC",
		"SELECT DISTINCT country_code FROM users ORDER BY country_code LIMIT 4",
		"SELECT DISTINCT level FROM users ORDER BY level LIMIT 3 OFFSET 2",
		"SELECT DISTINCT c.continent FROM users u JOIN countries c ON c.code = u.country_code ORDER BY 1",
	)

	b.section("UNION across shards")
	b.ok(
		"SELECT id FROM users WHERE level = 1 UNION ALL SELECT id FROM users WHERE level = 2",
		"SELECT id FROM users WHERE level = 1 UNION SELECT id FROM users WHERE level < 3",
		"SELECT country_code FROM users UNION SELECT code FROM countries",
		"SELECT id FROM users WHERE level = 1 UNION ALL SELECT id FROM users WHERE level = 2 ORDER BY id",
		"SELECT id FROM users WHERE level = 1 UNION SELECT id FROM users WHERE level = 2 ORDER BY id DESC LIMIT 10",
		"SELECT author_id FROM posts UNION SELECT follower_id FROM follows ORDER BY 1",
		"SELECT author_id AS uid FROM posts UNION ALL SELECT user_id FROM likes ORDER BY uid LIMIT 20",
		"SELECT level FROM users UNION SELECT flags FROM users WHERE flags > 95 ORDER BY 1",
		"SELECT id, 'user' AS kind FROM users WHERE id < 10 UNION ALL SELECT id, 'post' FROM posts WHERE id < 10 ORDER BY kind, id",
		"SELECT name FROM users WHERE id = 1 UNION ALL SELECT name FROM users WHERE id = 2",
	)

	b.section("INTERSECT and EXCEPT across shards")
	b.ok(
		"SELECT author_id FROM posts INTERSECT SELECT follower_id FROM follows",
		"SELECT id FROM users EXCEPT SELECT author_id FROM posts",
		"SELECT author_id FROM posts INTERSECT ALL SELECT follower_id FROM follows",
		"SELECT author_id FROM posts EXCEPT ALL SELECT follower_id FROM follows",
		"SELECT follower_id FROM follows EXCEPT ALL SELECT author_id FROM posts ORDER BY 1",
		"SELECT level, active FROM users INTERSECT SELECT level, active FROM users WHERE flags > 50 ORDER BY 1, 2",
		"SELECT country_code FROM users INTERSECT SELECT code FROM countries ORDER BY 1",
		"SELECT country_code FROM users EXCEPT SELECT code FROM countries WHERE continent = 'Europe' ORDER BY 1 NULLS FIRST",
		"SELECT id FROM users WHERE level < 3 EXCEPT SELECT id FROM users WHERE level = 1 ORDER BY id DESC LIMIT 5 OFFSET 2",
		"SELECT level FROM users INTERSECT VALUES (1), (3), (NULL) ORDER BY 1",
		"SELECT author_id AS uid FROM posts INTERSECT SELECT user_id FROM likes ORDER BY uid LIMIT 10",
		"SELECT name, country_code FROM users EXCEPT ALL SELECT name, country_code FROM users WHERE id % 3 = 0",
		"SELECT * FROM users EXCEPT SELECT * FROM users WHERE level > 1",
		"SELECT id FROM users INTERSECT SELECT level FROM users ORDER BY 1",
		"SELECT karma FROM users INTERSECT SELECT karma FROM users WHERE active ORDER BY 1",
		"SELECT u.id FROM users u JOIN posts p ON p.author_id = u.id WHERE p.like_count > 3 INTERSECT SELECT follower_id FROM follows ORDER BY 1",
		"SELECT post_author_id, post_id FROM likes EXCEPT SELECT author_id, id FROM posts WHERE like_count > 2 ORDER BY 1, 2 LIMIT 7",
	)
	b.args("SELECT id FROM users WHERE level = $1 INTERSECT SELECT author_id FROM posts ORDER BY 1 LIMIT $2", "2", "5")
	b.ok("SELECT to_jsonb(level) FROM users INTERSECT SELECT to_jsonb(flags) FROM users ORDER BY 1",
		"SELECT jsonb_build_object('k', karma) FROM users EXCEPT SELECT jsonb_build_object('k', karma * 1.0) FROM users WHERE level = 1")

	b.args("SELECT author_id FROM posts WHERE like_count > $1 EXCEPT ALL SELECT user_id FROM likes WHERE post_id < $2 ORDER BY 1 OFFSET $3", "1", "50", "3")
	b.ok(
		"SELECT author_id FROM posts INTERSECT SELECT follower_id FROM follows EXCEPT SELECT id FROM users WHERE level = 1",
		"SELECT country_code FROM users INTERSECT ALL SELECT code FROM countries",
		"SELECT country_code FROM users WHERE level = 1 UNION ALL SELECT code FROM countries ORDER BY 1 NULLS FIRST",
		"SELECT id FROM users WHERE level = 2 UNION ALL SELECT 7 UNION ALL SELECT author_id FROM posts WHERE like_count > 3",
		"SELECT id FROM users WHERE level = 1 UNION SELECT id FROM users WHERE level < 3 UNION ALL SELECT author_id FROM posts ORDER BY 1 LIMIT 30",
		"SELECT follower_id FROM follows EXCEPT (SELECT author_id FROM posts INTERSECT SELECT user_id FROM likes) ORDER BY 1",
		"SELECT level FROM users EXCEPT ALL VALUES (1), (1), (2) ORDER BY 1",
		"(SELECT author_id FROM posts UNION ALL SELECT follower_id FROM follows) INTERSECT ALL (SELECT user_id FROM likes UNION ALL SELECT id FROM users) ORDER BY 1 DESC LIMIT 12",
		"SELECT code FROM countries EXCEPT SELECT country_code FROM users WHERE level > 1 ORDER BY 1",
		"WITH eu AS (SELECT code FROM countries WHERE continent = 'Europe') SELECT country_code FROM users INTERSECT ALL SELECT code FROM eu EXCEPT SELECT 'DE' ORDER BY 1",
	)
	b.refused("INTERSECT/EXCEPT over columns the proxy cannot compare",
		"SELECT ('10.0.0.' || abs(level) % 200)::inet FROM users INTERSECT SELECT ('10.0.0.' || abs(flags) % 5)::inet FROM users",
		"SELECT * FROM users EXCEPT SELECT * FROM users WHERE level > 1 ORDER BY id",
	)
	b.fails("SELECT to_json(level) FROM users INTERSECT SELECT to_json(flags) FROM users")

	b.section("jsonb across shards (ORDER BY, DISTINCT, GROUP BY: jsonb_cmp order, numbers by value)")
	b.ok(
		"SELECT id, jsonb_build_object('l', level, 'k', karma) AS j FROM users ORDER BY j, id LIMIT 20",
		"SELECT id, to_jsonb(karma) AS j FROM users ORDER BY j DESC NULLS LAST, id",
		"SELECT id, CASE WHEN id % 4 = 0 THEN '[]'::jsonb WHEN id % 4 = 1 THEN 'null'::jsonb WHEN id % 4 = 2 THEN to_jsonb(name) ELSE jsonb_build_array(level) END AS j FROM users ORDER BY j, id",
		"SELECT level, jsonb_agg(id ORDER BY id) AS ids FROM users GROUP BY level ORDER BY ids",
		"SELECT DISTINCT jsonb_build_object('a', level % 3, 'bb', active) AS j FROM users ORDER BY j",
		"SELECT DISTINCT to_jsonb(karma) FROM users",
		"SELECT jsonb_build_array(active, level % 2) AS k, count(*) FROM users GROUP BY 1 ORDER BY 1",
		"SELECT jsonb_build_object('n', (level % 2)::numeric(4,2)) AS k, count(*) FROM users GROUP BY jsonb_build_object('n', (level % 2)::numeric(4,2)) ORDER BY 1",
	)

	b.section("Colocated joins and reference joins (pushed down)")
	b.ok(
		"SELECT u.id, p.id FROM users u JOIN posts p ON p.author_id = u.id WHERE u.level = 3",
		"SELECT u.id, p.id, c.id FROM users u JOIN posts p ON p.author_id = u.id JOIN comments c ON c.post_author_id = p.author_id AND c.post_id = p.id WHERE u.id < 30",
		"SELECT p.author_id, p.id, count(l.user_id) FROM posts p LEFT JOIN likes l ON l.post_author_id = p.author_id AND l.post_id = p.id GROUP BY p.author_id, p.id ORDER BY 3 DESC, 2 LIMIT 15",
		"SELECT u.id FROM users u LEFT JOIN posts p ON p.author_id = u.id WHERE p.id IS NULL ORDER BY u.id",
		"SELECT u.id, f.followee_id FROM users u JOIN follows f ON f.follower_id = u.id WHERE u.country_code = 'FR' ORDER BY 1, 2",
		"SELECT u.name, c.name, c.continent FROM users u JOIN countries c ON u.country_code = c.code WHERE u.karma > 9000",
		"SELECT u.name, c.name FROM users u LEFT JOIN countries c ON u.country_code = c.code ORDER BY u.id LIMIT 20",
		"SELECT c.code, u.id FROM countries c JOIN users u ON u.country_code = c.code WHERE c.code = 'JP' ORDER BY u.id",
		"SELECT u.id, p.id, l.user_id FROM users u JOIN posts p ON p.author_id = u.id JOIN likes l ON l.post_author_id = p.author_id AND l.post_id = p.id WHERE l.user_id = 5",
		"SELECT u.id FROM users u, posts p WHERE p.author_id = u.id AND p.like_count = 49 ORDER BY u.id, p.id",
		"SELECT u.id, x.n FROM users u JOIN LATERAL (SELECT count(*) AS n FROM posts p WHERE p.author_id = u.id) x ON true WHERE u.id < 20 ORDER BY u.id",
		"SELECT u.id, c.continent FROM users u JOIN countries c ON c.code = u.country_code ORDER BY c.continent, u.id LIMIT 25",
		"SELECT count(*) FROM follows f JOIN users u ON u.id = f.follower_id WHERE u.active",
	)

	b.section("Subqueries and CTEs that stay on each shard")
	b.ok(
		"SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM posts p WHERE p.author_id = u.id AND p.like_count > 40) ORDER BY id",
		"SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.author_id = u.id) ORDER BY id",
		"SELECT id, (SELECT count(*) FROM posts p WHERE p.author_id = u.id) AS posts FROM users u ORDER BY id LIMIT 20",
		"SELECT id FROM users u WHERE id IN (SELECT follower_id FROM follows f WHERE f.follower_id = u.id AND f.followee_id = 1)",
		"SELECT id, name FROM users WHERE country_code IN (SELECT code FROM countries WHERE continent = 'Asia') ORDER BY id",
		"SELECT id FROM users WHERE country_code = (SELECT code FROM countries WHERE name = 'Germany') ORDER BY id",
		"SELECT * FROM (SELECT id, karma FROM users WHERE karma > 0) s WHERE s.karma < 100",
		"SELECT s.id FROM (SELECT id, level FROM users) s WHERE s.level = 9 ORDER BY s.id",
		"WITH active_users AS (SELECT id, name FROM users WHERE active) SELECT id, name FROM active_users ORDER BY id LIMIT 10",
		"WITH c AS (SELECT code FROM countries WHERE continent = 'Europe') SELECT count(*) FROM users WHERE country_code IN (SELECT code FROM c)",
		"SELECT id FROM users u WHERE karma > (SELECT avg(karma) FROM users u2 WHERE u2.id = u.id) ORDER BY id",
		"SELECT author_id, n FROM (SELECT author_id, count(*) AS n FROM posts GROUP BY author_id) s WHERE n > 5 ORDER BY author_id",
		// Grouped (or DISTINCT ON) by the key written as an output position.
		"SELECT max(n), count(*) FROM (SELECT author_id, count(*) AS n FROM posts GROUP BY 1) s",
		"WITH t AS (SELECT author_id, sum(like_count) AS total FROM posts GROUP BY 1) SELECT count(*), max(total) FROM t",
		"SELECT count(*) FROM (SELECT DISTINCT ON (1) author_id, id FROM posts) s",
		"SELECT author_id, count(*) FROM posts GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
		// CTEs and derived tables joined on the key: scattered, and on the key's shard.
		"WITH p AS (SELECT author_id, id FROM posts WHERE like_count > 30) SELECT u.id, p.id FROM users u JOIN p ON p.author_id = u.id",
		"WITH p AS (SELECT author_id, id FROM posts WHERE like_count > 30) SELECT u.id, p.id FROM users u JOIN p ON p.author_id = u.id WHERE u.id = 12 ORDER BY p.id",
		"SELECT u.id, t.total FROM users u JOIN (SELECT author_id, sum(like_count) AS total FROM posts GROUP BY author_id) t ON t.author_id = u.id ORDER BY t.total DESC, u.id LIMIT 10",
		"SELECT u.name, t.total FROM users u JOIN (SELECT author_id, sum(like_count) AS total FROM posts GROUP BY author_id) t ON t.author_id = u.id WHERE u.id = 33",
		"SELECT t.a, t.n, u.name FROM (SELECT author_id, count(*) FROM posts GROUP BY author_id) AS t(a, n) JOIN users u ON u.id = t.a WHERE t.n >= 3 ORDER BY t.n DESC, t.a LIMIT 8",
		"WITH c AS (SELECT * FROM comments WHERE author_id <> post_author_id) SELECT p.author_id, p.id, count(c.id) FROM posts p LEFT JOIN c ON c.post_author_id = p.author_id AND c.post_id = p.id GROUP BY p.author_id, p.id ORDER BY 3 DESC, 1, 2 LIMIT 15",
		"WITH p AS (SELECT author_id, like_count FROM posts), l AS (SELECT post_author_id, count(*) AS n FROM likes GROUP BY post_author_id) SELECT u.id, sum(p.like_count), min(l.n) FROM users u JOIN p ON p.author_id = u.id JOIN l ON l.post_author_id = u.id GROUP BY u.id ORDER BY u.id LIMIT 12",
		"SELECT count(*), sum(t.n) FROM (SELECT follower_id, count(*) AS n FROM follows GROUP BY follower_id) t JOIN users u ON u.id = t.follower_id WHERE u.active",
		"SELECT u.level, count(*) FROM users u JOIN (SELECT author_id FROM posts WHERE like_count > 40 GROUP BY author_id) t ON t.author_id = u.id GROUP BY u.level ORDER BY u.level",
		"SELECT s.id, s.name, cn.name FROM (SELECT u.id, u.name, u.country_code FROM users u JOIN posts p ON p.author_id = u.id WHERE p.like_count > 45) s JOIN countries cn ON cn.code = s.country_code ORDER BY s.id, cn.name",
		"SELECT x.id, p.id FROM (SELECT * FROM users WHERE level = 3) x JOIN posts p ON p.author_id = x.id ORDER BY p.id LIMIT 20",
		"SELECT b.author_id, u.name FROM (SELECT * FROM (SELECT author_id FROM posts WHERE like_count > 40) a) b JOIN users u ON u.id = b.author_id ORDER BY 1, 2",
		"WITH p AS (SELECT author_id FROM posts WHERE like_count > 45) SELECT id FROM users WHERE id IN (SELECT author_id FROM p) ORDER BY id",
		"WITH p AS (SELECT author_id FROM posts) SELECT id, name FROM users WHERE id = 9 AND id IN (SELECT author_id FROM p)",
		"SELECT t.author_id, t.id, u.name FROM (SELECT author_id, id, row_number() OVER (PARTITION BY author_id ORDER BY like_count DESC, id) AS rn FROM posts) t JOIN users u ON u.id = t.author_id WHERE t.rn <= 2 ORDER BY 1, 2",
		"WITH ranked AS (SELECT follower_id, followee_id, rank() OVER (PARTITION BY follower_id ORDER BY created_at, followee_id) AS r FROM follows) SELECT r, count(*) FROM ranked GROUP BY r ORDER BY r LIMIT 5",
		// key IN (SELECT key ...) and EXISTS correlated on the key: semi-joins on each shard.
		"SELECT id FROM users WHERE id IN (SELECT id FROM users WHERE level = 4) ORDER BY id",
		"SELECT id, name FROM users WHERE id IN (SELECT author_id FROM posts WHERE like_count > 45) ORDER BY id",
		"SELECT count(*) FROM users WHERE active AND id IN (SELECT follower_id FROM follows WHERE followee_id = 1)",
		"SELECT id FROM users WHERE id = 7 AND id IN (SELECT author_id FROM posts)",
		"SELECT author_id, id FROM posts WHERE author_id = ANY (SELECT id FROM users WHERE karma > 4000) AND like_count > 20 ORDER BY author_id, id",
		"SELECT level, count(*) FROM users WHERE id IN (SELECT post_author_id FROM likes GROUP BY post_author_id HAVING count(*) > 5) GROUP BY level ORDER BY level",
		"SELECT u.id, p.id FROM users u JOIN posts p ON p.author_id = u.id AND p.author_id IN (SELECT post_author_id FROM likes WHERE user_id = 3) ORDER BY 1, 2",
		"SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM likes l WHERE l.post_author_id = u.id AND l.user_id = 2) ORDER BY id",
		"SELECT id FROM users u WHERE u.id = 40 AND EXISTS (SELECT 1 FROM posts p WHERE p.author_id = u.id)",
		"SELECT count(*) FROM posts p WHERE NOT EXISTS (SELECT 1 FROM comments c WHERE c.post_author_id = p.author_id AND c.post_id = p.id)",
	)
	b.args("WITH p AS (SELECT author_id, id FROM posts WHERE like_count > $2) SELECT u.id, p.id FROM users u JOIN p ON p.author_id = u.id WHERE u.id = $1 ORDER BY p.id", "12", "10")
	b.args("SELECT id FROM users WHERE id IN (SELECT author_id FROM posts WHERE like_count > $1) ORDER BY id LIMIT 25", "40")
	b.refused("a CTE, derived table or IN subquery (in an ON clause, or correlated with the outer query; an uncorrelated one among the WHERE's AND conjuncts runs first, see below) over several shards with LIMIT, ORDER BY, DISTINCT not over the distribution key, an aggregate not grouped by the distribution key or a window not partitioned by it, that does not select the key as a plain column, a CTE referenced twice, or NOT IN / IN outside a WHERE or ON conjunct (their answer depends on NULLs other shards hold) is refused; group or partition it by the key, move the LIMIT/ORDER BY to the outer query, or join the tables directly on their keys",
		"WITH p AS (SELECT author_id FROM posts WHERE like_count > 45) SELECT count(*) FROM users u JOIN p ON p.author_id = u.id, p AS p2",
		"SELECT count(*) FROM users WHERE id NOT IN (SELECT author_id FROM posts)",
		"SELECT id, id IN (SELECT author_id FROM posts) FROM users",
	)

	b.section("WITH queries and derived tables over shards that need the proxy, read once: run first, their rows put in their place")
	b.ok(
		"WITH top AS (SELECT author_id, count(*) AS n FROM posts GROUP BY author_id ORDER BY n DESC, author_id LIMIT 5) SELECT u.name, top.n FROM top JOIN users u ON u.id = top.author_id ORDER BY top.n DESC, u.name",
		"WITH top AS (SELECT author_id, sum(like_count) AS likes FROM posts GROUP BY author_id ORDER BY likes DESC, author_id LIMIT 4) SELECT t.author_id, t.likes, count(*) FROM top t JOIN follows f ON f.followee_id = t.author_id GROUP BY t.author_id, t.likes ORDER BY t.likes DESC, 1",
		"WITH lvl AS (SELECT level, count(*) AS n FROM users GROUP BY level) SELECT u.id, lvl.n FROM users u JOIN lvl ON lvl.level = u.level WHERE u.id < 20 ORDER BY u.id",
		"WITH recent AS (SELECT author_id, id FROM posts ORDER BY created_at DESC, author_id, id LIMIT 10) SELECT r.author_id, r.id, u.name FROM recent r JOIN users u ON u.id = r.author_id ORDER BY 1, 2",
		"WITH top AS (SELECT id FROM users ORDER BY karma DESC NULLS LAST LIMIT 5) SELECT p.id FROM posts p JOIN top ON top.id = p.author_id",
		"WITH top AS (SELECT id FROM users ORDER BY karma DESC NULLS LAST, id LIMIT 4) SELECT l.post_author_id, l.post_id, l.user_id FROM likes l JOIN top ON l.user_id = top.id ORDER BY 1, 2, 3",
		"SELECT u.id FROM users u JOIN (SELECT author_id FROM posts ORDER BY like_count DESC, author_id, id LIMIT 5) t ON t.author_id = u.id ORDER BY u.id",
		"SELECT u.id, t.n FROM users u JOIN (SELECT level, count(*) AS n FROM users GROUP BY level) t ON t.level = u.level WHERE u.id <= 12 ORDER BY u.id",
		"SELECT t.author_id, t.likes, u.name FROM (SELECT author_id, sum(like_count) AS likes FROM posts GROUP BY author_id ORDER BY likes DESC, author_id LIMIT 3) AS t JOIN users u ON u.id = t.author_id ORDER BY t.likes DESC",
		"SELECT u.id FROM users u JOIN (SELECT author_id + 0 AS author_id FROM posts) t ON t.author_id = u.id",
		"SELECT * FROM (SELECT id, row_number() OVER (ORDER BY karma NULLS LAST, id) AS rn FROM users) t WHERE rn <= 3",
		"SELECT * FROM (SELECT id FROM users ORDER BY id LIMIT 10) s",
		"SELECT count(*) FROM (SELECT DISTINCT level FROM users) s",
	)

	b.section("Nested DISTINCT over the distribution key (duplicates are on one shard)")
	b.ok(
		"SELECT id FROM users WHERE id IN (SELECT DISTINCT author_id FROM posts)",
		"SELECT count(*) FROM (SELECT DISTINCT author_id FROM posts WHERE like_count > 10) d",
		"WITH a AS (SELECT DISTINCT author_id, like_count FROM posts) SELECT count(*), sum(like_count) FROM a",
		"SELECT u.name, d.n FROM users u JOIN (SELECT DISTINCT post_author_id, post_id AS n FROM comments) d ON d.post_author_id = u.id ORDER BY u.id, d.n LIMIT 30",
		"SELECT count(*) FROM (SELECT DISTINCT ON (author_id) author_id, id FROM posts) d",
	)

	b.section("Window functions partitioned by the key")
	b.ok(
		"SELECT author_id, id, row_number() OVER (PARTITION BY author_id ORDER BY id) FROM posts",
		"SELECT author_id, id, rank() OVER (PARTITION BY author_id ORDER BY like_count DESC) FROM posts ORDER BY author_id, id",
		"SELECT author_id, id, sum(like_count) OVER (PARTITION BY author_id) FROM posts ORDER BY id LIMIT 30",
		"SELECT post_author_id, id, count(*) OVER (PARTITION BY post_author_id, post_id) FROM comments ORDER BY id LIMIT 30",
		"SELECT follower_id, followee_id, lag(followee_id) OVER (PARTITION BY follower_id ORDER BY followee_id) FROM follows ORDER BY 1, 2 LIMIT 40",
		"SELECT author_id, id, row_number() OVER w, first_value(id) OVER w FROM posts WINDOW w AS (PARTITION BY author_id ORDER BY created_at, id) ORDER BY id",
		"SELECT u.id, p.id, dense_rank() OVER (PARTITION BY u.id ORDER BY p.like_count) FROM users u JOIN posts p ON p.author_id = u.id ORDER BY p.id LIMIT 25",
		"SELECT author_id, count(*), rank() OVER (PARTITION BY author_id ORDER BY count(*)) FROM posts GROUP BY author_id ORDER BY author_id",
		"SELECT id, row_number() OVER (PARTITION BY id) FROM users WHERE level = 2",
	)

	b.section("Uncorrelated subqueries run first (pulled out), the outer statement gets their values")
	b.ok(
		"SELECT * FROM posts WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = 3) ORDER BY created_at DESC, author_id, id LIMIT 20",
		"SELECT id FROM users WHERE id IN (SELECT followee_id FROM follows WHERE follower_id = 3)",
		"SELECT id FROM users WHERE karma > (SELECT avg(karma) FROM users)",
		"SELECT count(*) FROM users WHERE country_code IN (SELECT country_code FROM users WHERE id < 30)",
		"SELECT count(*) FROM users WHERE karma > (SELECT karma FROM users WHERE id = 1000000)",
		"SELECT id FROM users WHERE id IN (SELECT followee_id FROM follows WHERE follower_id = -5)",
		"SELECT id, name FROM users WHERE created_at < (SELECT min(created_at) FROM posts) ORDER BY id",
		"SELECT count(*) FROM users WHERE name >= (SELECT max(name) FROM users WHERE level = 3)",
		"SELECT id FROM users WHERE external_id IN (SELECT external_id FROM users WHERE level = 2 AND id < 50) ORDER BY id",
		"SELECT id FROM users WHERE avatar = ANY (SELECT avatar FROM users WHERE id < 10) ORDER BY id",
		"SELECT id FROM users WHERE session_len < (SELECT max(session_len) FROM users WHERE level = 1) AND birthday = ANY (SELECT birthday FROM users WHERE level = 2) ORDER BY id",
		"SELECT count(*), sum(like_count) FROM posts WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = 7) AND like_count >= (SELECT avg(like_count) FROM posts)",
		"SELECT level, count(*) FROM users WHERE id IN (SELECT followee_id FROM follows WHERE follower_id < 20) GROUP BY level ORDER BY level",
		"SELECT id FROM users WHERE id IN (SELECT author_id FROM posts ORDER BY like_count DESC, author_id, id LIMIT 5)",
		"SELECT id FROM users WHERE karma > (SELECT avg(karma) FROM users WHERE id IN (SELECT followee_id FROM follows WHERE follower_id = 3)) ORDER BY id",
		`SELECT count(*), min(x) FROM (SELECT name || '''"\' AS x FROM users) t WHERE x IN (SELECT name || '''"\' FROM users WHERE level = 1 UNION SELECT NULL)`,
	)
	// Values go to the outer statement exactly, whatever the session's
	// output settings (extra_float_digits 0 rounds float text output).
	b.ok(
		"SET extra_float_digits = 0",
		"SELECT count(*) FROM users WHERE rating / 3 >= (SELECT max(rating / 3) FROM users WHERE level = 2)",
		"SELECT count(*) FROM users WHERE rating / 3 = ANY (SELECT rating / 3 FROM users WHERE level = 2)",
		"RESET extra_float_digits",
	)
	b.args("SELECT author_id, id FROM posts WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1) AND like_count > $2 ORDER BY author_id, id LIMIT $3", "3", "5", "10")
	b.args("SELECT id FROM users WHERE level = $2 AND karma > (SELECT avg(karma) FROM users WHERE level = $1) ORDER BY id", "4", "5")
	b.fails(
		"SELECT id FROM users WHERE karma > (SELECT karma FROM users WHERE level = 3)",
	)

	b.section("Ranking windows computed by the proxy over the merged window order")
	b.ok(
		"SELECT id, karma, rank() OVER (ORDER BY karma DESC NULLS LAST, id) FROM users ORDER BY karma DESC NULLS LAST, id LIMIT 10",
		"SELECT level, rank() OVER (ORDER BY level), dense_rank() OVER (ORDER BY level) AS dr FROM users WHERE id < 40 ORDER BY level",
		"SELECT author_id, id, row_number() OVER (ORDER BY like_count DESC, author_id, id) AS pos FROM posts LIMIT 7 OFFSET 3",
		"SELECT level, rank() OVER (ORDER BY level DESC) FROM users WHERE level >= 3 ORDER BY level DESC LIMIT 25",
		"SELECT country_code, dense_rank() OVER (ORDER BY country_code NULLS FIRST) FROM users WHERE id % 7 = 0 ORDER BY country_code NULLS FIRST",
		// PARTITION BY: numbering starts again in each partition.
		"SELECT level, id, row_number() OVER (PARTITION BY level ORDER BY id) AS n, rank() OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 60 ORDER BY level, id",
		"SELECT level, karma, rank() OVER (PARTITION BY level ORDER BY karma DESC NULLS LAST), dense_rank() OVER (PARTITION BY level ORDER BY karma DESC NULLS LAST) FROM users WHERE id % 5 = 0 ORDER BY level, karma DESC NULLS LAST",
		"SELECT active, level, dense_rank() OVER (PARTITION BY active ORDER BY level) FROM users ORDER BY active, level LIMIT 30",
		"SELECT post_author_id % 4, post_id, user_id, row_number() OVER (PARTITION BY post_author_id % 4 ORDER BY post_id, user_id, post_author_id) FROM likes WHERE post_id < 40",
		// lag(x), first_value(x): the shards return x, the proxy moves it along.
		"SELECT id, karma, lag(karma) OVER (ORDER BY id) FROM users WHERE id < 30 ORDER BY id",
		"SELECT level, id, lag(id, 2) OVER (PARTITION BY level ORDER BY id), lag(name, 1) OVER (PARTITION BY level ORDER BY id), lag(id, 30) OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 80 ORDER BY level, id",
		"SELECT level, id, lag(id) OVER (PARTITION BY level ORDER BY id) AS prev, first_value(name) OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 50 ORDER BY level, id",
		"SELECT author_id, id, first_value(body) OVER (ORDER BY created_at, author_id, id), lag(created_at) OVER (ORDER BY created_at, author_id, id) FROM posts ORDER BY created_at, author_id, id LIMIT 6",
		"SELECT id, lag(avatar) OVER (ORDER BY id), lag(rating) OVER (ORDER BY id), lag(session_len) OVER (ORDER BY id) FROM users WHERE id BETWEEN 40 AND 60 ORDER BY id",
		"SELECT id, lead(karma) OVER (ORDER BY id), lag(karma) OVER (ORDER BY id) FROM users WHERE id < 25 ORDER BY id",
		"SELECT level, id, lead(id, 2) OVER (PARTITION BY level ORDER BY id), lead(name, 3) OVER (PARTITION BY level ORDER BY id), ntile(2) OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 80 ORDER BY level, id",
		"SELECT level, id, lead(name) OVER (PARTITION BY level ORDER BY id), row_number() OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 70 ORDER BY level, id",
		"SELECT author_id, id, lead(id) OVER (ORDER BY created_at DESC, author_id, id) FROM posts ORDER BY created_at DESC, author_id, id LIMIT 5",
		"SELECT author_id, id, lead(id) OVER (ORDER BY like_count, author_id, id) FROM posts ORDER BY like_count, author_id, id LIMIT 4 OFFSET 2",
		"SELECT level, last_value(level) OVER (ORDER BY level), nth_value(level, 5) OVER (ORDER BY level), nth_value(level, 40) OVER (ORDER BY level) FROM users WHERE id < 60 ORDER BY level",
		"SELECT level, id, last_value(id) OVER (PARTITION BY level ORDER BY id ROWS UNBOUNDED PRECEDING), nth_value(name, 2) OVER (PARTITION BY level ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), last_value(karma) OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 60 ORDER BY level, id",
		// Grouped by the key: each shard's groups are final, the window ranks them.
		"SELECT author_id, count(*) AS n, rank() OVER (ORDER BY count(*) DESC, author_id) FROM posts GROUP BY author_id ORDER BY count(*) DESC, author_id LIMIT 8",
		"SELECT sum(1) AS likes, dense_rank() OVER (ORDER BY sum(1) DESC) FROM likes GROUP BY post_author_id ORDER BY sum(1) DESC LIMIT 12",
		// ntile, percent_rank, cume_dist: the whole partition is read first.
		"SELECT level, ntile(4) OVER (ORDER BY level), percent_rank() OVER (ORDER BY level), cume_dist() OVER (ORDER BY level) FROM users WHERE id < 90 ORDER BY level",
		"SELECT level, id, ntile(3) OVER (PARTITION BY level ORDER BY id), percent_rank() OVER (PARTITION BY level ORDER BY id), rank() OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 75 ORDER BY level, id",
		"SELECT id, ntile(7) OVER (ORDER BY id), ntile(100) OVER (ORDER BY id), cume_dist() OVER (ORDER BY id) FROM users WHERE id < 23 ORDER BY id",
		// Running aggregates (RANGE: to the last peer; ROWS: to the row) and partition totals.
		"SELECT level, count(*) OVER (ORDER BY level), sum(level) OVER (ORDER BY level), max(id) OVER (ORDER BY level) FROM users WHERE id < 40 ORDER BY level",
		"SELECT id, count(*) OVER (ORDER BY id) FROM users ORDER BY id LIMIT 5",
		"SELECT id, sum(karma) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), count(karma) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING), min(karma) OVER (ORDER BY id) FROM users WHERE id < 50 ORDER BY id",
		"SELECT level, id, sum(id) OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 70 ORDER BY level, id",
		"SELECT level, count(*) OVER (PARTITION BY level), max(name) OVER (PARTITION BY level) FROM users WHERE id < 70 ORDER BY level",
		"SELECT id, avg(karma) OVER (ORDER BY id), avg(level) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING), avg(id) OVER (ORDER BY id) FROM users WHERE id < 40 ORDER BY id",
		"SELECT level, avg(karma) OVER (PARTITION BY level), avg(flags) OVER (PARTITION BY level) FROM users ORDER BY level",
		"SELECT author_id % 3, sum(like_count) OVER (PARTITION BY author_id % 3), max(created_at) OVER (PARTITION BY author_id % 3), min(created_at) OVER (PARTITION BY author_id % 3) FROM posts WHERE id < 120 ORDER BY author_id % 3",
		"SELECT created_at::date AS day, count(*) OVER (ORDER BY created_at::date) AS running FROM posts WHERE like_count > 45 ORDER BY created_at::date LIMIT 10",
		// Another ORDER BY than the window's: the numbered rows are sorted again.
		"SELECT id, rank() OVER (ORDER BY karma) FROM users ORDER BY id",
		"SELECT country_code, dense_rank() OVER (ORDER BY country_code) FROM users ORDER BY country_code, 2",
		"SELECT id, karma, rank() OVER (ORDER BY karma DESC NULLS LAST) AS r FROM users ORDER BY r, id LIMIT 10 OFFSET 2",
		"SELECT level, id, row_number() OVER (PARTITION BY level ORDER BY id DESC) FROM users WHERE id < 60 ORDER BY id",
		"SELECT id, lag(karma) OVER (ORDER BY created_at, id), lead(id) OVER (ORDER BY created_at, id), sum(level) OVER (ORDER BY created_at, id) FROM users WHERE id < 40 ORDER BY level DESC, id",
		"SELECT author_id, id, ntile(3) OVER (PARTITION BY author_id % 2 ORDER BY like_count, id) FROM posts WHERE id < 90 ORDER BY 3 DESC, id, author_id LIMIT 12",
		"SELECT author_id, count(*), rank() OVER (ORDER BY count(*) DESC) FROM posts GROUP BY author_id HAVING count(*) > 1 ORDER BY author_id",
		"SELECT id, rank() OVER (PARTITION BY level ORDER BY id) FROM users ORDER BY id",
		// With LIMIT, calls over peers or the whole partition need rows past the limit: it stays in the proxy.
		"SELECT id, percent_rank() OVER (ORDER BY created_at, id) FROM users WHERE id < 109 ORDER BY created_at, id LIMIT 5 OFFSET 4",
		"SELECT level, count(*) OVER (ORDER BY level) FROM users ORDER BY level LIMIT 3",
		"SELECT level, id, ntile(3) OVER (ORDER BY level, id), cume_dist() OVER (ORDER BY level, id) FROM users ORDER BY level, id LIMIT 4",
		"SELECT level, count(*) OVER (PARTITION BY level), max(karma) OVER (PARTITION BY level) FROM users ORDER BY level LIMIT 5",
		"SELECT id, lead(id, 3) OVER (ORDER BY id) FROM users ORDER BY id LIMIT 4",
		"SELECT level, id, max(id) OVER (ORDER BY level) FROM users ORDER BY level, id LIMIT 4",
		"SELECT id, sum(level) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING), lead(id) OVER (ORDER BY id) FROM users ORDER BY id LIMIT 6",
		// Windows beside *: columns after the * counted from the row's end.
		"SELECT *, row_number() OVER (ORDER BY id) FROM users",
		"SELECT row_number() OVER (ORDER BY id DESC) AS rn, * FROM users WHERE id < 10 ORDER BY id DESC",
		"SELECT u.*, rank() OVER (ORDER BY id), lag(name) OVER (ORDER BY id) AS prev FROM users u WHERE id < 30 ORDER BY id",
		"SELECT *, lead(id, 1, 0) OVER (ORDER BY created_at, author_id, id) FROM posts ORDER BY created_at, author_id, id LIMIT 5",
		// Calls that need the whole partition beside calls over peer groups, in one window: two passes in the same order.
		"SELECT id, lead(id, 2) OVER (ORDER BY id), sum(id) OVER (ORDER BY id) FROM users",
		"SELECT id, ntile(4) OVER (ORDER BY id), count(*) OVER (ORDER BY id) FROM users",
		"SELECT level, id, percent_rank() OVER (PARTITION BY level ORDER BY karma NULLS FIRST, id), sum(id) OVER (PARTITION BY level ORDER BY karma NULLS FIRST, id ROWS UNBOUNDED PRECEDING), lead(name, 3) OVER (PARTITION BY level ORDER BY karma NULLS FIRST, id) FROM users WHERE id < 80 ORDER BY level, id",
		// Window calls inside expressions: computed by the proxy, the expression evaluated after them.
		"SELECT level, row_number() OVER (ORDER BY level) + 1 FROM users",
		"SELECT id, karma - lag(karma) OVER (ORDER BY id) AS delta FROM users WHERE id < 30 ORDER BY id",
		"SELECT level, id, row_number() OVER (PARTITION BY level ORDER BY id) + 1, round(100.0 * rank() OVER (ORDER BY karma DESC NULLS LAST, id) / count(*) OVER (ORDER BY karma DESC NULLS LAST, id), 2) FROM users WHERE id < 40 ORDER BY id",
		"SELECT id, coalesce(lead(name) OVER (ORDER BY id), 'last') AS next_name, upper(name) || '/' || lag(id, 1, 0) OVER (ORDER BY id) FROM users WHERE id < 20 ORDER BY id DESC",
		"SELECT id, level * 10 + dense_rank() OVER (PARTITION BY active ORDER BY level) AS score FROM users WHERE id < 50 ORDER BY score, id LIMIT 7",
		// Several windows: the shards send the first one's order, the proxy sorts again for each further one.
		"SELECT id, rank() OVER (ORDER BY karma DESC NULLS LAST, id) AS by_karma, rank() OVER (ORDER BY rating DESC NULLS LAST, id) AS by_rating FROM users WHERE id < 60 ORDER BY id",
		"SELECT level, id, row_number() OVER (PARTITION BY level ORDER BY id), dense_rank() OVER (ORDER BY level DESC), lag(id) OVER (ORDER BY id) FROM users WHERE id < 50",
		"SELECT id, row_number() OVER (ORDER BY id DESC) AS a, row_number() OVER (ORDER BY id) AS b FROM users ORDER BY a LIMIT 5",
		"SELECT id, ntile(4) OVER (ORDER BY id), count(*) OVER (ORDER BY level), sum(level) OVER (PARTITION BY active ORDER BY id) FROM users WHERE id < 40 ORDER BY id",
		"SELECT level, count(*), rank() OVER (ORDER BY count(*) DESC, level), rank() OVER (ORDER BY sum(karma) NULLS FIRST, level) FROM users GROUP BY level ORDER BY level",
		// lag and lead with a default: taken where no row is n away, in the common type of the value and the default.
		"SELECT id, lag(id, 2, 0) OVER (ORDER BY id) FROM users",
		"SELECT id, lead(id, 2, 0) OVER (ORDER BY id) FROM users",
		"SELECT level, id, lag(karma, 1, 0) OVER (PARTITION BY level ORDER BY id), lead(name, 2, 'none') OVER (PARTITION BY level ORDER BY id) FROM users WHERE id < 60 ORDER BY level, id",
		"SELECT id, lag(level, 1, 1.5) OVER (ORDER BY id), lead(flags, 3, level * 100) OVER (ORDER BY id), lead(id, 1, -id) OVER (ORDER BY id) FROM users WHERE id < 30 ORDER BY id",
		"SELECT id, lag(birthday, 1, '2000-01-01') OVER (ORDER BY id), lead(country_code, 1, NULL) OVER (ORDER BY id) FROM users WHERE id < 20 ORDER BY id DESC",
		// Over groups the proxy aggregates (GROUP BY not by the key): numbered after HAVING.
		"SELECT level, count(*), lag(count(*)) OVER (ORDER BY level) FROM users GROUP BY level ORDER BY level",
		// Expressions over the groups' aggregates and window values (month over month), evaluated after the windows.
		"SELECT level, count(*) - lag(count(*)) OVER (ORDER BY level) FROM users GROUP BY level",
		"SELECT date_trunc('month', created_at) AS month, count(*) AS n, count(*) - lag(count(*)) OVER (ORDER BY date_trunc('month', created_at)) AS growth FROM posts GROUP BY 1 ORDER BY 1",
		"SELECT level, sum(karma), round(100 * sum(karma) / nullif(lag(sum(karma)) OVER (ORDER BY level), 0), 2) AS pct FROM users GROUP BY level ORDER BY level",
		"SELECT active, max(id) - min(id) + rank() OVER (ORDER BY active) AS x, count(*) FROM users GROUP BY active ORDER BY x DESC",
		"SELECT country_code, sum(karma), lead(sum(karma), 2) OVER (ORDER BY country_code NULLS FIRST), first_value(max(id)) OVER (ORDER BY count(*) DESC, country_code), last_value(avg(level)) OVER (ORDER BY country_code NULLS FIRST) FROM users GROUP BY country_code ORDER BY country_code NULLS FIRST",
		"SELECT active, level, min(created_at), nth_value(min(created_at), 2) OVER (PARTITION BY active ORDER BY level) FROM users GROUP BY active, level HAVING count(*) > 2 ORDER BY active, level",
		"SELECT level, count(*), rank() OVER (ORDER BY count(*)) FROM users GROUP BY level",
		"SELECT country_code, count(*) AS n, dense_rank() OVER (ORDER BY count(*) DESC) FROM users GROUP BY country_code ORDER BY country_code NULLS FIRST",
		"SELECT level, active, sum(karma), row_number() OVER (PARTITION BY active ORDER BY sum(karma) DESC NULLS LAST, level) FROM users GROUP BY level, active HAVING count(*) > 3 ORDER BY active, level",
		"SELECT level, count(*), ntile(3) OVER (ORDER BY level), percent_rank() OVER (ORDER BY level), cume_dist() OVER (ORDER BY level) FROM users GROUP BY level ORDER BY 2 DESC, level LIMIT 4",
		"SELECT post_author_id % 5 AS g, count(*), rank() OVER (ORDER BY count(*) DESC, post_author_id % 5) AS r FROM likes GROUP BY post_author_id % 5 ORDER BY r",
	)
	b.args("SELECT id, rank() OVER (ORDER BY karma DESC NULLS LAST) FROM users WHERE level = $1 ORDER BY karma DESC NULLS LAST LIMIT $2", "2", "5")
	b.args("SELECT id, rank() OVER (ORDER BY karma DESC NULLS LAST) FROM users WHERE level = $1 ORDER BY id DESC LIMIT $2 OFFSET $3", "2", "5", "1")
	b.args("SELECT level, count(*) FROM users WHERE id > $1 GROUP BY level ORDER BY level LIMIT $2 OFFSET $3", "3", "4", "1")
	b.args("SELECT country_code, count(*), rank() OVER (ORDER BY count(*) DESC, country_code) FROM users WHERE level > $1 GROUP BY country_code ORDER BY 3 LIMIT $2", "1", "5")
	b.args("SELECT id, row_number() OVER (ORDER BY id) * $1 FROM users WHERE level = $2 ORDER BY id", "3", "2")
	b.args("SELECT id, lead(id) OVER (ORDER BY id) FROM users WHERE level = $1 ORDER BY id LIMIT $2", "2", "5")
	// Running float sums and averages: added in the window's order, as one
	// server does (a unique ORDER BY, so the order is the same).
	b.ok(
		"SELECT id, sum(rating) OVER (ORDER BY id) FROM users",
		"SELECT id, avg(rating) OVER (ORDER BY id) FROM users",
		"SELECT id, rating, sum(rating) OVER (PARTITION BY level ORDER BY rating NULLS FIRST, id DESC), avg(rating) OVER (PARTITION BY active ORDER BY id ROWS UNBOUNDED PRECEDING) FROM users ORDER BY id",
		"SELECT author_id, id, score, sum(score) OVER (ORDER BY author_id, id), avg(score) OVER (PARTITION BY author_id % 3 ORDER BY author_id, id) FROM posts ORDER BY author_id, id",
		"SELECT id, sum(rating::real) OVER (ORDER BY id DESC) FROM users ORDER BY id LIMIT 15",
	)
	// Running aggregates of the groups' aggregates, over groups the proxy
	// aggregates (running totals).
	b.ok(
		"SELECT level, count(*), sum(count(*)) OVER (ORDER BY level) FROM users GROUP BY level ORDER BY level",
		"SELECT country_code, level % 2 AS odd, sum(karma), sum(sum(karma)) OVER (PARTITION BY country_code ORDER BY level % 2) FROM users GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2",
		"SELECT level, max(id), max(max(id)) OVER (ORDER BY level DESC), min(min(created_at)) OVER (ORDER BY level) FROM users GROUP BY level ORDER BY level",
		"SELECT active, level, count(karma), count(sum(karma)) OVER (PARTITION BY active ORDER BY level ROWS UNBOUNDED PRECEDING) FROM users GROUP BY active, level ORDER BY 1, 2",
		"SELECT date_trunc('month', created_at) AS month, count(*), sum(count(*)) OVER (ORDER BY date_trunc('month', created_at)) AS running FROM posts GROUP BY 1 ORDER BY 1 DESC LIMIT 5",
		"SELECT level, count(*), round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct FROM users GROUP BY level ORDER BY level",
		"SELECT country_code, sum(karma), sum(sum(karma)) OVER () AS total, max(max(id)) OVER () FROM users GROUP BY country_code ORDER BY 1 NULLS FIRST",
		"SELECT active, level, count(*), count(*) - sum(count(*)) OVER (PARTITION BY active ORDER BY level) AS diff FROM users GROUP BY active, level ORDER BY 1, 2",
		"SELECT count(*), sum(count(*)) OVER (), max(karma) FROM users WHERE level > 1",
		// Moving aggregates (ROWS n PRECEDING), over rows and over groups.
		"SELECT id, sum(karma) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM users",
		"SELECT id, avg(rating) OVER (PARTITION BY level ORDER BY id ROWS BETWEEN 3 PRECEDING AND CURRENT ROW), min(karma) OVER (ORDER BY id ROWS 1 PRECEDING), count(rating) OVER (ORDER BY id ROWS BETWEEN 0 PRECEDING AND CURRENT ROW), max(name) OVER (ORDER BY id ROWS 4 PRECEDING) FROM users ORDER BY id",
		"SELECT id, sum(karma) OVER (ORDER BY id ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS moving FROM users ORDER BY id LIMIT 10",
		"SELECT id, karma - avg(karma) OVER (ORDER BY id ROWS 6 PRECEDING) AS off_trend FROM users ORDER BY id DESC LIMIT 20",
		"SELECT date_trunc('month', created_at) AS month, count(*), avg(count(*)) OVER (ORDER BY date_trunc('month', created_at) ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS moving FROM posts GROUP BY 1 ORDER BY 1",
		"SELECT level, sum(karma), sum(sum(karma)) OVER (ORDER BY level ROWS 1 PRECEDING), max(max(rating)) OVER (ORDER BY level DESC ROWS 2 PRECEDING) FROM users GROUP BY level ORDER BY level",
		// lag/lead with a default over groups (of the aggregate's type).
		"SELECT level, count(*), lag(count(*), 1, 0) OVER (ORDER BY level) FROM users GROUP BY level ORDER BY level",
		"SELECT country_code, sum(karma), lead(sum(karma), 2, 0) OVER (ORDER BY country_code NULLS FIRST) FROM users GROUP BY 1 ORDER BY 1 NULLS FIRST",
		"SELECT level, max(rating), lag(max(rating), 1, -1) OVER (PARTITION BY level % 2 ORDER BY level) FROM users GROUP BY level ORDER BY level",
		// count(*) over groups counts groups; avg of the groups' aggregates.
		"SELECT count(*), count(*) OVER () FROM users",
		"SELECT level, count(*), count(*) OVER () FROM users GROUP BY level ORDER BY level",
		"SELECT country_code, count(*) OVER (ORDER BY country_code NULLS FIRST) AS n, count(*) FROM users GROUP BY country_code ORDER BY 1 NULLS FIRST",
		"SELECT level, avg(count(*)) OVER () FROM users GROUP BY level ORDER BY level",
		"SELECT level, sum(karma), avg(sum(karma)) OVER (ORDER BY level) FROM users GROUP BY level ORDER BY level",
		"SELECT active, level, max(rating), avg(max(rating)) OVER (PARTITION BY active ORDER BY level) FROM users GROUP BY 1, 2 ORDER BY 1, 2",
		"SELECT level, count(*) - avg(count(*)) OVER () AS above_average FROM users GROUP BY level ORDER BY level",
		"SELECT level, count(*), round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct, count(*) OVER () AS groups FROM users GROUP BY level HAVING count(*) > 1 ORDER BY level",
		"SELECT date_trunc('month', created_at) AS month, count(*), avg(count(*)) OVER (ORDER BY date_trunc('month', created_at) ROWS UNBOUNDED PRECEDING) FROM posts GROUP BY 1 ORDER BY 1",
	)
	b.refused("window functions over rows of several shards (not partitioned by the distribution key) are not supported",
		"SELECT id AS karma, rank() OVER (ORDER BY karma) FROM users",
		"SELECT id, lag(id, level) OVER (ORDER BY id) FROM users",
		"SELECT id, sum(karma) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) FROM users",
		"SELECT id, sum(karma) OVER (ORDER BY id RANGE BETWEEN 2 PRECEDING AND CURRENT ROW) FROM users",
		"SELECT id, nth_value(id, level) OVER (ORDER BY id) FROM users",
		"SELECT id, last_value(id) OVER (ORDER BY id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) FROM users",
		"SELECT id, rank() OVER (ORDER BY karma) FROM users ORDER BY rank() OVER (ORDER BY karma), id",
		"SELECT *, row_number() OVER (ORDER BY id), * FROM users",
		"SELECT row_number() OVER (ORDER BY id DESC) AS rn, * FROM users WHERE id < 10 ORDER BY id",
		"SELECT u.*, lag(name) OVER (ORDER BY id) AS prev FROM users u WHERE id < 30 ORDER BY prev NULLS FIRST, id",
		"SELECT level, max(id), lag(max(id), 1, 0.5) OVER (ORDER BY level) FROM users GROUP BY level",
		"SELECT level, avg(karma) - lag(avg(karma)) OVER (ORDER BY level) FROM users GROUP BY level",
		"SELECT id, sum(karma) OVER (ORDER BY id ROWS BETWEEN 10001 PRECEDING AND CURRENT ROW) FROM users",
		// Grouped by the key: the groups come from every shard, an empty
		// window over them is refused.
		"SELECT author_id, count(*), count(*) OVER () AS authors FROM posts GROUP BY author_id ORDER BY author_id LIMIT 5",
		// Over the one row of a scalar aggregate: not the total of the
		// FROM's rows (count(*) OVER () is computed, see above).
		"SELECT count(*), count(1) OVER () FROM users",
	)

	b.section("Aggregates over the whole result (OVER ()) run first")
	b.ok(
		"SELECT id, name, count(*) OVER () FROM users WHERE country_code = 'FR' ORDER BY id LIMIT 5",
		"SELECT id, count(*) OVER () AS total, sum(karma) OVER (), max(level) OVER () FROM users WHERE level = 2 ORDER BY id LIMIT 3 OFFSET 2",
		"SELECT author_id, id, like_count * 100 / (sum(like_count) OVER ()) AS share FROM posts WHERE like_count > 40 ORDER BY author_id, id",
		"SELECT id, count(karma) FILTER (WHERE karma > 0) OVER (), avg(rating) OVER () FROM users WHERE id < 20 ORDER BY id",
		"SELECT id, count(*) OVER () FROM users WHERE id < 0",
		"SELECT id, sum(karma) OVER () FROM users",
		"SELECT u.id, count(*) OVER () FROM users u JOIN posts p ON p.author_id = u.id WHERE u.level = 3 ORDER BY p.id DESC LIMIT 4",
	)
	b.args("SELECT id, count(*) OVER () FROM users WHERE level = $1 AND karma > $2 ORDER BY id LIMIT $3", "1", "0", "4")

	b.section("Joins of tables not colocated, one restricted by its own conditions: its rows are read first")
	b.ok(
		"SELECT p.id, p.created_at FROM posts p JOIN follows f ON f.followee_id = p.author_id WHERE f.follower_id = 1 ORDER BY p.created_at DESC, p.id LIMIT 20",
		"SELECT p.author_id, p.id FROM posts p JOIN follows f ON f.followee_id = p.author_id AND f.follower_id = 2 ORDER BY p.id",
		"SELECT f.follower_id, f.followee_id, f.created_at, p.id, p.like_count FROM follows f JOIN posts p ON p.author_id = f.followee_id WHERE f.follower_id = 3 ORDER BY 2, 4",
		"SELECT count(*), sum(p.like_count) FROM posts p, follows f WHERE follower_id = 4 AND f.followee_id = p.author_id",
		"SELECT count(*) FROM posts p JOIN follows f ON f.followee_id = p.author_id WHERE f.follower_id = -1",
		"SELECT count(*) FROM posts p JOIN follows f ON f.followee_id = p.author_id WHERE f.follower_id = 11 AND like_count > 20 AND (f.created_at > p.created_at OR p.like_count < 3)",
		"SELECT f.*, p.id FROM follows f JOIN posts p ON p.author_id = f.followee_id WHERE f.follower_id = 5 ORDER BY p.id LIMIT 5",
		"SELECT f.followee_id, count(p.id), max(p.like_count) FROM follows f JOIN posts p ON p.author_id = f.followee_id WHERE f.follower_id = 6 GROUP BY 1 ORDER BY 1",
		"SELECT u.name, f.created_at FROM follows f JOIN users u ON u.id = f.followee_id WHERE f.follower_id = 9 AND f.created_at < now() ORDER BY u.name, f.created_at",
		"SELECT u.name, p.id FROM follows f JOIN users u ON u.id = f.followee_id JOIN posts p ON p.author_id = u.id WHERE f.follower_id = 10 ORDER BY 1, 2",
		// Restricted, but not by its key: read from every shard first.
		"SELECT p.id, c.body FROM posts p JOIN comments c ON (c.post_author_id, c.post_id) = (p.author_id, p.id) WHERE c.author_id = 7 ORDER BY c.id",
		"SELECT * FROM posts p JOIN follows f ON f.followee_id = p.author_id WHERE f.follower_id = 14 ORDER BY p.id",
		"SELECT count(*), count(DISTINCT b.followee_id) FROM follows a JOIN follows b ON b.follower_id = a.followee_id WHERE a.follower_id = 15",
		"SELECT p.id, c.id FROM posts p JOIN comments c USING (id) WHERE c.post_author_id = 5 ORDER BY 1, 2",
		"SELECT count(*) FROM posts NATURAL JOIN comments c WHERE c.post_author_id = 6",
		// Every column type of users goes through the pulled rows.
		"SELECT u.*, l.post_id FROM users u JOIN likes l ON l.user_id = u.id WHERE u.id = 13 ORDER BY l.post_id",
	)
	b.fails(
		// id names users.id and posts.id: ambiguous, as in PostgreSQL.
		"SELECT count(*) FROM users u JOIN posts p ON p.author_id = u.id + 1 WHERE id = 5",
	)
	b.args("SELECT p.id FROM posts p JOIN follows f ON f.followee_id = p.author_id WHERE f.follower_id = $1 AND p.like_count > $2 ORDER BY p.id", "7", "10")
	b.args("SELECT p.id FROM posts p JOIN follows f ON f.followee_id = p.author_id WHERE p.like_count > $2 AND f.follower_id = $1 ORDER BY p.id LIMIT $3", "8", "5", "4")

	b.section("Cross-shard shapes that are refused")
	b.refused("a join of distributed tables not on their distribution keys would need rows from several shards; join on the keys or add a key condition that selects one shard",
		"SELECT f.follower_id, u.name FROM follows f JOIN users u ON u.id = f.followee_id",
		"SELECT count(*) FROM likes l JOIN users u ON u.id = l.user_id",
		"SELECT c.id, u.name FROM comments c JOIN users u ON u.id = c.author_id ORDER BY c.id LIMIT 5",
		"SELECT u.id, e.email FROM users u JOIN emails e ON e.user_id = u.id",
		"SELECT u.id, p.id FROM users u JOIN posts p USING (id) WHERE false",
		"SELECT count(*) FROM posts p LEFT JOIN follows f ON f.followee_id = p.author_id AND f.follower_id = 1",
		"SELECT l.user_id, p.id FROM likes l JOIN posts p ON p.author_id = l.post_author_id AND p.id = l.post_id JOIN users u ON u.id = l.user_id WHERE l.post_author_id = 12 ORDER BY 1, 2",
		"SELECT f.followee_id, x.id FROM follows f, LATERAL (SELECT p.id FROM posts p WHERE p.author_id = f.followee_id ORDER BY p.id LIMIT 2) x WHERE f.follower_id = 16 ORDER BY 1, 2",
	)
	b.refused("a subquery that needs rows from other shards and is correlated with the outer query (not on the distribution key), or is not an IN / = ANY / scalar comparison operand among the WHERE's AND conjuncts (those run first), is not supported; correlate it on the key or run it separately",
		"SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM follows f WHERE f.followee_id = u.id AND f.follower_id = 1)",
	)
	b.section("json_agg across shards")
	b.ok(
		"SELECT json_agg(id ORDER BY id) FROM users WHERE id < 30",
		"SELECT level, json_agg(name ORDER BY karma DESC NULLS LAST, id) FILTER (WHERE active), count(*) FROM users GROUP BY level ORDER BY level",
		"SELECT json_agg(DISTINCT country_code) FROM users",
		"SELECT json_agg(birthday ORDER BY id), json_agg(karma ORDER BY id) FROM users WHERE id BETWEEN 10 AND 20",
		"SELECT json_agg(id) FROM users WHERE id < 0",
		"SELECT active, json_agg(rating ORDER BY rating NULLS FIRST, id) FROM users GROUP BY active HAVING count(*) > 1 ORDER BY 1",
	)
	b.refused("this aggregate has no cross-shard combine step; compute it on one shard or in the application (jsonb_agg instead of json_agg is combined across shards)",
		"SELECT json_agg(u ORDER BY id) FROM users u",
	)
	b.section("percentile_cont and percentile_disc across shards")
	b.ok(
		"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY karma) FROM users",
		"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY rating) FROM users",
		"SELECT level, percentile_disc(0.9) WITHIN GROUP (ORDER BY karma) FROM users GROUP BY level ORDER BY level",
		"SELECT percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY level), percentile_disc(ARRAY[0.1, 0.9]) WITHIN GROUP (ORDER BY id DESC) FROM users",
		`SELECT active, percentile_disc(0.5) WITHIN GROUP (ORDER BY name COLLATE "C" DESC) FROM users GROUP BY active ORDER BY 1`,
		"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY session_len) FILTER (WHERE active), count(*) FROM users",
		"SELECT country_code, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY karma)::numeric, 2) AS median FROM users GROUP BY 1 HAVING percentile_cont(0.5) WITHIN GROUP (ORDER BY karma) > 10 ORDER BY median DESC NULLS LAST, 1",
		"SELECT percentile_disc(0) WITHIN GROUP (ORDER BY id), percentile_disc(1) WITHIN GROUP (ORDER BY id), percentile_cont(1) WITHIN GROUP (ORDER BY flags) FROM users WHERE level > 100",
		"SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY birthday), percentile_disc(0.25) WITHIN GROUP (ORDER BY created_at DESC) FROM users",
		"SELECT level, percentile_disc(0.5) WITHIN GROUP (ORDER BY created_at) FILTER (WHERE active), array_agg(birthday ORDER BY birthday NULLS FIRST, id) FROM users WHERE id < 80 GROUP BY level ORDER BY level",
	)
	b.refused("percentile_cont/percentile_disc across shards need a constant fraction",
		"SELECT level, percentile_cont(level / 10.0) WITHIN GROUP (ORDER BY karma) FROM users GROUP BY level",
	)
	b.section("Cross-shard shapes that are refused")
	b.ok(
		"SELECT array_agg(id ORDER BY karma NULLS FIRST, id) FROM users WHERE level = 1",
		"SELECT level, string_agg(name, ', ' ORDER BY active DESC, name COLLATE \"C\", id) FROM users GROUP BY level ORDER BY level",
		"SELECT active, array_agg(id ORDER BY country_code NULLS FIRST, birthday DESC, id DESC) FROM users GROUP BY active ORDER BY active",
		"SELECT jsonb_agg(id ORDER BY level, karma DESC NULLS LAST, id) FROM users WHERE id < 40",
		"SELECT level, array_agg(name ORDER BY flags % 3, id) FILTER (WHERE active), count(*) FROM users GROUP BY level HAVING count(*) > 2 ORDER BY 1",
	)
	b.ok(
		"SELECT string_agg(DISTINCT country_code, ',' ORDER BY country_code) FROM users",
		"SELECT array_agg(DISTINCT level) FROM users",
		"SELECT active, array_agg(DISTINCT country_code ORDER BY country_code DESC) FROM users GROUP BY active ORDER BY 1",
		"SELECT level % 3, jsonb_agg(DISTINCT flags % 4), count(DISTINCT country_code) FROM users GROUP BY 1 ORDER BY 1",
		"SELECT string_agg(DISTINCT name, '|') FILTER (WHERE level > 1), array_agg(DISTINCT karma) FROM users WHERE id < 60",
	)
	b.refused("a row comparison is not recognised as a join on the distribution keys; write one equality per column (ON c.post_author_id = p.author_id AND c.post_id = p.id)",
		"SELECT count(*) FROM posts p JOIN comments c ON (c.post_author_id, c.post_id) = (p.author_id, p.id)",
	)
	b.section("GROUPING SETS, ROLLUP and CUBE across shards")
	b.ok(
		"SELECT level, active, count(*) FROM users GROUP BY ROLLUP (level, active)",
		"SELECT level, active, count(*), sum(karma), GROUPING(level, active) FROM users GROUP BY CUBE (level, active) ORDER BY 5, 1 NULLS FIRST, 2 NULLS FIRST",
		"SELECT country_code, level % 2 AS odd, count(*), avg(karma) FROM users GROUP BY GROUPING SETS ((country_code, level % 2), (country_code), ()) HAVING count(*) > 1 ORDER BY 1 NULLS LAST, 2 NULLS LAST",
		"SELECT active, count(*), max(name) FROM users WHERE id < 0 GROUP BY ROLLUP (active)",
		"SELECT level, active, count(*) FROM users GROUP BY level, ROLLUP (active) ORDER BY 1, 2 NULLS FIRST",
		"SELECT country_code, count(*) FROM users GROUP BY ROLLUP (1) ORDER BY 1 NULLS FIRST, 2 LIMIT 5",
		"SELECT country_code, birthday IS NULL AS nob, count(*) FROM users GROUP BY ROLLUP ((country_code, birthday IS NULL)) ORDER BY 1 NULLS FIRST, 2",
		"SELECT level, string_agg(name, ',' ORDER BY name), GROUPING(level) FROM users WHERE level < 3 GROUP BY GROUPING SETS (level, ()) ORDER BY 3, 1",
		"SELECT level, active, count(*) FROM users GROUP BY DISTINCT ROLLUP (level, active), ROLLUP (level) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 3",
		"SELECT level, active, count(*) FROM users GROUP BY ROLLUP (level), CUBE (active) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 3",
		"SELECT level % 3 AS l, active, count(*) FROM users GROUP BY DISTINCT level % 3, active ORDER BY 1, 2",
	)
	b.refused("GROUPING SETS that repeat a set across shards (write GROUP BY DISTINCT)",
		"SELECT level, count(*) FROM users GROUP BY GROUPING SETS ((level), (level), ())",
		"SELECT level, active, count(*) FROM users GROUP BY ROLLUP (level, active), ROLLUP (level)",
	)
	b.section("Cross-shard shapes that are refused")
	b.refused("FOR UPDATE with ORDER BY or OFFSET across shards would lock rows the answer does not return; lock by a key condition",
		"SELECT id FROM users WHERE level = 1 ORDER BY id LIMIT 1 FOR UPDATE",
	)

	b.section("Row locks across shards")
	// Django's select_for_update().get() and update_or_create add LIMIT 21.
	b.ok("SELECT id, name FROM users WHERE email LIKE '%@%' AND id < 6 LIMIT 21 FOR UPDATE",
		"SELECT id, level FROM users WHERE id BETWEEN 10 AND 13 FOR UPDATE",
		"SELECT id FROM users WHERE id BETWEEN 10 AND 13 LIMIT 21 FOR NO KEY UPDATE")

	b.section("Errors are the server's")
	b.fails(
		"SELECT id / 0 FROM users",
		"SELECT no_such_column FROM users",
		"SELECT * FROM no_such_table",
		"SELECT id FROM users ORDER BY id LIMIT -1",
		"SELECT id::text::int FROM users WHERE name = 'x' AND 1/0 = 1",
		"SELECT sum(level::smallint) FROM users GROUP BY 1/0",
		"SELECT 'abc'::int",
		"SELEC 1",
	)

	b.section("Keyless writes on every shard")
	b.ok(
		"UPDATE users SET karma = karma + 1 WHERE level = 9",
		"UPDATE users SET karma = karma - 1 WHERE level = 9",
		"UPDATE posts SET like_count = like_count + 1 WHERE like_count = 0",
		"UPDATE posts SET like_count = like_count WHERE id % 10 = 1",
		"UPDATE users SET active = NOT active WHERE id % 50 = 7 RETURNING id, active",
		"UPDATE users SET active = NOT active WHERE id % 50 = 7 RETURNING id",
		"DELETE FROM likes WHERE user_id = 299 RETURNING post_author_id, post_id, user_id",
		"DELETE FROM comments WHERE body LIKE 'rain 3%'",
		"UPDATE users SET level = level WHERE false",
		"DELETE FROM follows WHERE follower_id = followee_id",
		"UPDATE users SET name = name || '' WHERE country_code = 'IT'",
		"UPDATE posts SET score = score + 1 WHERE score > 98 RETURNING author_id, id, score",
		"UPDATE posts SET score = score - 1 WHERE score > 99 RETURNING author_id, id, score",
		"UPDATE users SET karma = 0 WHERE id = 5 RETURNING id, karma",
	)
	b.fails(
		"UPDATE users SET level = level / 0 WHERE level = 5",
	)

	b.section("UPDATE and DELETE with uncorrelated subqueries on other shards (run first)")
	b.ok(
		"UPDATE posts SET like_count = like_count + 1 WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = 3) RETURNING author_id, id, like_count",
		"DELETE FROM likes WHERE user_id IN (SELECT id FROM users WHERE level = 4 AND id < 60) RETURNING post_author_id, post_id, user_id",
		"UPDATE users SET karma = karma + 1 WHERE karma < (SELECT avg(karma) FROM users WHERE level = 1) AND level = 2 RETURNING id, karma",
		"DELETE FROM comments WHERE post_author_id = ANY (SELECT author_id FROM posts WHERE like_count > 45) AND id % 3 = 0",
		"UPDATE posts SET body = body || '.' WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = -7)",
		"SELECT author_id, id, like_count, body FROM posts WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id IN (3, -7)) ORDER BY 1, 2",
		// A table of USING / FROM restricted by its own conditions is read first.
		"DELETE FROM likes l USING users u WHERE u.id = l.user_id AND u.level = 1 AND u.id < 80 RETURNING l.post_author_id, l.post_id, l.user_id",
		"UPDATE posts p SET like_count = p.like_count + 1 FROM follows f WHERE f.followee_id = p.author_id AND f.follower_id = 21 RETURNING p.author_id, p.id, p.like_count",
		"UPDATE comments c SET body = c.body || '!' FROM users u WHERE u.id = c.author_id AND u.id = 33",
		// A derived table or WITH query of FROM / USING that needs the proxy is run first too.
		"WITH top AS (SELECT id FROM users ORDER BY karma DESC NULLS LAST, id LIMIT 3) DELETE FROM likes l USING top WHERE l.user_id = top.id AND l.post_id % 3 = 0 RETURNING l.post_author_id, l.post_id, l.user_id",
		"UPDATE posts p SET like_count = p.like_count + 1 FROM (SELECT author_id FROM posts GROUP BY author_id ORDER BY sum(like_count) DESC, author_id LIMIT 3) t WHERE p.author_id = t.author_id RETURNING p.author_id, p.id, p.like_count",
		"WITH top AS (SELECT post_author_id, post_id FROM likes GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 2) DELETE FROM likes l USING top WHERE l.post_author_id = top.post_author_id AND l.post_id = top.post_id AND l.user_id % 2 = 0 RETURNING l.post_author_id, l.post_id, l.user_id",
		"SELECT post_author_id, id, body FROM comments WHERE author_id = 33 ORDER BY 1, 2",
	)
	b.args("DELETE FROM follows WHERE followee_id = $1 AND follower_id IN (SELECT id FROM users WHERE level = $2)", "5", "2")
	b.args("DELETE FROM follows f USING users u WHERE u.id = f.followee_id AND u.level = $1 AND u.id > $2", "3", "200")
	b.fails(
		"UPDATE users SET level = 1 WHERE id = (SELECT id FROM users WHERE level = 3)",
	)

	b.section("UPDATE of the distribution key (rows move between shards)")
	b.ok(
		"UPDATE posts SET author_id = author_id + 1 WHERE id = 3",
		"UPDATE users SET id = id + 3003 WHERE id = 7 RETURNING id, name",
		"UPDATE users SET id = 3007, name = name || '?' WHERE id = 3010",
		"UPDATE users SET id = 3001, name = name || '!' WHERE id = 8 RETURNING *",
		"UPDATE users SET id = id + 3100 WHERE id BETWEEN 11 AND 19",
		"UPDATE users SET id = id * 1000 + 7 WHERE id IN (24, 25) RETURNING id * 2 AS twice, upper(name), karma + 1",
		"SELECT id, name, email, karma, rating, created_at, avatar FROM users WHERE id > 3000 ORDER BY id",
	)
	b.args("UPDATE users SET id = $1 WHERE id = $2 RETURNING id, email", "3020", "23")
	b.fails(
		"UPDATE users SET id = NULL WHERE id = 6",
		"UPDATE users SET id = 22 WHERE id = 21",
	)
	b.refused("UPDATE … FROM cannot change the distribution key; compute the new keys first and update without FROM",
		"UPDATE users SET id = users.id + 5000 FROM countries c WHERE c.code = users.country_code AND users.id = 30",
	)

	b.section("INSERT … SELECT")
	// Pushed down: the target key is a colocated table's key.
	b.ok(
		"INSERT INTO likes (post_author_id, post_id, user_id, created_at) SELECT author_id, id, 1, created_at FROM posts WHERE author_id = 2 ON CONFLICT DO NOTHING",
		"INSERT INTO likes (post_author_id, post_id, user_id, created_at) SELECT author_id, id, 2, created_at FROM posts WHERE id % 7 = 3 ON CONFLICT DO NOTHING",
		"INSERT INTO likes (post_author_id, post_id, user_id, created_at) SELECT p.author_id, p.id, u.id, p.created_at FROM posts p JOIN users u ON u.id = p.author_id WHERE u.level = 3 ON CONFLICT DO NOTHING RETURNING post_author_id, post_id, user_id",
	)
	// Through the proxy: the key comes from another column, a reference
	// table, a constant, or a SELECT that needs a merge.
	b.ok(
		"INSERT INTO follows (follower_id, followee_id, created_at) SELECT user_id, post_author_id, min(created_at) FROM likes WHERE post_id % 11 = 0 GROUP BY 1, 2 ON CONFLICT DO NOTHING",
		"INSERT INTO comments (post_author_id, post_id, id, author_id, body, created_at) SELECT l.user_id, l.post_id, 900000 + l.post_id, l.post_author_id, 'liked', l.created_at FROM likes l WHERE l.user_id = 7 ON CONFLICT DO NOTHING RETURNING post_author_id, id, body",
		"INSERT INTO posts (author_id, id, body, created_at) SELECT 11, 800000 + ascii(code) * 1000 + ascii(substr(code, 2)), name, '2024-06-01 12:00:00+00' FROM countries ON CONFLICT DO NOTHING RETURNING author_id, id, body",
		"INSERT INTO posts (author_id, id, body, created_at) SELECT id, 700000, name, created_at FROM users ORDER BY karma DESC NULLS LAST, id LIMIT 25 ON CONFLICT DO NOTHING",
		"INSERT INTO posts (author_id, id, body, created_at, like_count) SELECT level, 710000, 'level', max(created_at), count(*) FROM users GROUP BY level ON CONFLICT DO NOTHING",
		"INSERT INTO posts (author_id, id, body, created_at) SELECT f.followee_id, 720000 + f.follower_id, 'follower', f.created_at FROM follows f WHERE f.follower_id = 3 ON CONFLICT (author_id, id) DO UPDATE SET body = excluded.body || ' again' RETURNING author_id, id, body",
		"INSERT INTO countries (code, name, continent, population) SELECT 'L' || level, 'Level ' || level, 'Nowhere', count(*) FROM users GROUP BY level ON CONFLICT (code) DO UPDATE SET population = excluded.population RETURNING code, population",
		"SELECT count(*), sum(like_count) FROM posts WHERE id >= 700000",
		"SELECT code, population FROM countries WHERE continent = 'Nowhere' ORDER BY code",
	)
	b.args("INSERT INTO likes (post_author_id, post_id, user_id, created_at) SELECT author_id, id, $1::bigint, created_at FROM posts WHERE author_id = $2 ON CONFLICT DO NOTHING RETURNING user_id, post_id", "13", "40")
	b.args("INSERT INTO follows (follower_id, followee_id, created_at) SELECT $1::bigint, id, created_at FROM users WHERE level = $2::int ON CONFLICT DO NOTHING RETURNING follower_id, followee_id", "77", "4")
	// Inside a transaction: the rows are there for the next statement.
	b.ok(
		"BEGIN",
		"INSERT INTO comments (post_author_id, post_id, id, author_id, body, created_at) SELECT follower_id, 1, 910000 + followee_id, followee_id, 'in a transaction', created_at FROM follows WHERE followee_id = 9 ON CONFLICT DO NOTHING",
		"SELECT post_author_id, id, author_id FROM comments WHERE body = 'in a transaction' ORDER BY post_author_id, id",
		"COMMIT",
		"SELECT count(*) FROM comments WHERE body = 'in a transaction'",
	)
	b.refused("INSERT … SELECT with a data-modifying CTE is not supported; run the data-modifying statement first",
		"WITH moved AS (DELETE FROM likes WHERE user_id = 298 RETURNING post_author_id, post_id, created_at) INSERT INTO likes (post_author_id, post_id, user_id, created_at) SELECT post_author_id, post_id, 297, created_at FROM moved ON CONFLICT DO NOTHING",
	)
	b.refused("INSERT … SELECT … ON CONFLICT DO UPDATE through the proxy takes at most 1,000 rows (PostgreSQL's check that no row is updated twice cannot span batches); restrict the SELECT or use DO NOTHING",
		"INSERT INTO follows (follower_id, followee_id, created_at) SELECT user_id, post_author_id + 100000, created_at FROM likes ON CONFLICT (follower_id, followee_id) DO UPDATE SET created_at = excluded.created_at",
	)

	b.section("Reads after the writes")
	b.ok(
		"SELECT count(*), sum(like_count) FROM posts",
		"SELECT id, active FROM users WHERE id % 50 = 7 ORDER BY id",
		"SELECT count(*) FROM likes",
		"SELECT count(*) FROM comments",
		"SELECT level, sum(karma) FROM users GROUP BY level ORDER BY level",
	)
	return b.cases
}
