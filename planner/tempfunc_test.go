package planner

import "testing"

// sequelizeFindOrCreate is the string Sequelize 6 sends for findOrCreate
// (create with exception handling), captured from a run.
const sequelizeFindOrCreate = `CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response "users", OUT sequelize_caught_exception text) RETURNS RECORD AS $func_3a0fc99f8f58446cab921f635b6db6a5$ BEGIN INSERT INTO "users" ("id","name","email","created_at") VALUES (DEFAULT,'foc','foc2@x','2026-11-24 10:01:01.727 +00:00') RETURNING * INTO response; EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS sequelize_caught_exception = PG_EXCEPTION_DETAIL; END $func_3a0fc99f8f58446cab921f635b6db6a5$ LANGUAGE plpgsql; SELECT (testfunc.response)."id", (testfunc.response)."name", (testfunc.response)."email", (testfunc.response)."country_code", (testfunc.response)."created_at", testfunc.sequelize_caught_exception FROM pg_temp.testfunc(); DROP FUNCTION IF EXISTS pg_temp.testfunc();`

func TestParseTempInsertFunction(t *testing.T) {
	f, ok := ParseTempInsertFunction(sequelizeFindOrCreate)
	if !ok {
		t.Fatal("Sequelize's findOrCreate string not recognized")
	}
	want := `INSERT INTO "users" ("id","name","email","created_at") VALUES (DEFAULT,'foc','foc2@x','2026-11-24 10:01:01.727 +00:00')`
	if f.Insert != want {
		t.Fatalf("Insert = %q, want %q", f.Insert, want)
	}
	if got := f.WithInsert(f.Insert); got != sequelizeFindOrCreate {
		t.Fatalf("WithInsert(Insert) does not give the string back:\n%s", got)
	}
	for _, bad := range []string{
		"SELECT 1",
		// Different delimiters: not the template.
		`CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response "users", OUT sequelize_caught_exception text) RETURNS RECORD AS $func_a$ BEGIN INSERT INTO "users" ("id") VALUES (1) RETURNING * INTO response; EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS sequelize_caught_exception = PG_EXCEPTION_DETAIL; END $func_b$ LANGUAGE plpgsql; SELECT * FROM pg_temp.testfunc(); DROP FUNCTION IF EXISTS pg_temp.testfunc();`,
		// Two statements where the INSERT should be.
		`CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response "users", OUT sequelize_caught_exception text) RETURNS RECORD AS $func_a$ BEGIN INSERT INTO "users" ("id") VALUES (1); DELETE FROM users RETURNING * INTO response; EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS sequelize_caught_exception = PG_EXCEPTION_DETAIL; END $func_a$ LANGUAGE plpgsql; SELECT * FROM pg_temp.testfunc(); DROP FUNCTION IF EXISTS pg_temp.testfunc();`,
	} {
		if _, ok := ParseTempInsertFunction(bad); ok {
			t.Errorf("recognized %q", bad)
		}
	}
}

func TestFillParams(t *testing.T) {
	got, err := FillParams(`INSERT INTO users (id, name) VALUES ($1, 'costs $1') RETURNING $2::int`, 1, []string{"42", "-7"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `INSERT INTO users (id, name) VALUES (42, 'costs $1') RETURNING -7::int`; got != want {
		t.Errorf("FillParams = %q, want %q", got, want)
	}
	if _, err := FillParams(`SELECT $1`, 1, []string{"x'"}); err == nil {
		t.Error("a non-integer value was accepted")
	}
	if _, err := FillParams(`SELECT $3`, 1, []string{"1"}); err == nil {
		t.Error("a parameter without a value was accepted")
	}
}
