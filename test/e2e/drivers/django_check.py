"""ORM check for Django (on psycopg2), run by test/e2e/drivers_test.go.

Runs the same Django code against the DSN given as argv[1] (a
postgresql://user@host:port/db URL) and prints one line per step: its name
and its result, or the exception's class and SQLSTATE. The Go test runs it
against plain PostgreSQL and through shardproxy over four shards and
compares the lines. Django runs in autocommit mode: QuerySet.iterator()
declares a WITH HOLD cursor outside a transaction, select_for_update().get()
and update_or_create lock with LIMIT 21, atomic() blocks nest as savepoints.
Generated ids differ between the two sides (the proxy's allocator), so the
steps print names; the rows they make have ids 3000 and up or none.
"""
import sys
from urllib.parse import urlparse

import django
from django.conf import settings

url = urlparse(sys.argv[1])
settings.configure(
    DATABASES={"default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": url.hostname, "PORT": str(url.port), "NAME": url.path.lstrip("/"),
        "USER": url.username or "postgres",
    }},
    INSTALLED_APPS=[], USE_TZ=True, TIME_ZONE="UTC",
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from django.db import connection, models, transaction  # noqa: E402
from django.db.models import Count, F, Max, Q  # noqa: E402


class User(models.Model):
    name = models.TextField()
    country = models.TextField(null=True)

    class Meta:
        app_label = "check"
        db_table = "users"


class Post(models.Model):
    author = models.ForeignKey(User, on_delete=models.DO_NOTHING, db_column="author_id")
    body = models.TextField(null=True)

    class Meta:
        app_label = "check"
        db_table = "posts"


def step(name, fn):
    try:
        value = fn()
    except Exception as e:  # the class and SQLSTATE are the result
        cause = e.__cause__ or e
        value = ("error", type(e).__name__, getattr(cause, "pgcode", None))
    print(f"{name}: {value!r}", flush=True)


def make_users():
    User.objects.bulk_create([User(id=i, name=f"dj{i}", country="NO" if i % 2 else "SE") for i in range(3000, 3010)])
    Post.objects.bulk_create([Post(id=3000 + i, author_id=3000 + i % 10, body=f"dj post {i}") for i in range(30)])
    return User.objects.filter(id__gte=3000).count(), Post.objects.filter(author_id__gte=3000).count()


step("bulk_create over shards", make_users)
step("get by key", lambda: User.objects.get(id=3004).name)
step("get not by key", lambda: User.objects.get(name="dj3007").id)
step("filter, order, slice", lambda: list(User.objects.filter(id__gte=3000).order_by("-name").values_list("name", flat=True)[2:5]))
step("annotate Count over a join", lambda: list(Post.objects.filter(author_id__gte=3000, author_id__lt=3004).values("author__name").annotate(n=Count("id")).order_by("author__name")))
step("aggregate", lambda: Post.objects.filter(author_id__gte=3000).aggregate(Max("id"), n=Count("id")))
step("values group by", lambda: list(User.objects.filter(id__gte=3000).values("country").annotate(n=Count("id")).order_by("country")))
step("select_related", lambda: [(p.body, p.author.name) for p in Post.objects.select_related("author").filter(author_id=3003).order_by("id")])
step("prefetch_related", lambda: [(u.name, sorted(p.body for p in u.post_set.all())) for u in User.objects.filter(id__in=[3001, 3002]).prefetch_related("post_set").order_by("id")])
step("Q objects", lambda: sorted(User.objects.filter(Q(id=3001) | Q(name="dj3008")).values_list("name", flat=True)))
step("exists", lambda: (Post.objects.filter(author_id=3005).exists(), Post.objects.filter(author_id=2999).exists()))

# iterator() in autocommit mode: a named cursor WITH HOLD, fetched in chunks.
step("iterator", lambda: sorted(p.body for p in Post.objects.filter(author_id__gte=3000).iterator(chunk_size=7))[:4])


def atomic_blocks():
    with transaction.atomic():
        u = User.objects.select_for_update().get(id=3001)
        u.name = "dj locked"
        u.save()
        Post.objects.create(id=3100, author_id=3002, body="in atomic")
        try:
            with transaction.atomic():
                Post.objects.create(id=3101, author_id=3003, body="rolled back")
                raise ValueError
        except ValueError:
            pass
    return User.objects.get(id=3001).name, sorted(Post.objects.filter(id__gte=3100).values_list("body", flat=True))


step("atomic with select_for_update and a savepoint", atomic_blocks)


def failed_atomic():
    try:
        with transaction.atomic():
            User.objects.filter(id=3002).update(name="lost")
            User.objects.create(id=3003, name="duplicate")
    except django.db.IntegrityError as e:
        return e.__cause__.pgcode, User.objects.get(id=3002).name


step("failed atomic rolls back everywhere", failed_atomic)
step("get_or_create creates", lambda: User.objects.get_or_create(id=3050, defaults={"name": "dj goc"})[1])
step("get_or_create gets", lambda: User.objects.get_or_create(id=3050, defaults={"name": "other"})[0].name)
step("update_or_create (select_for_update with LIMIT 21)", lambda: (lambda r: (r[0].name, r[1]))(User.objects.update_or_create(name="dj goc", defaults={"country": "IS"})))
step("update with F", lambda: Post.objects.filter(author_id__gte=3000, body__startswith="dj post").update(body=F("body")))
step("raw", lambda: [u.name for u in User.objects.raw("SELECT id, name FROM users WHERE id IN (%s, %s) ORDER BY id", [3005, 3006])])


def cursor_sql():
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), min(name) FROM users WHERE id >= %s", [3000])
        return cur.fetchone()


step("connection.cursor", cursor_sql)
step("delete", lambda: (Post.objects.filter(author_id__gte=3000).delete()[0], User.objects.filter(id__gte=3000).delete()[0]))
