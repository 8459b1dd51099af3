"""ORM check for SQLAlchemy (1.4, on psycopg2), run by test/e2e/drivers_test.go.

Runs the same ORM code against the DSN given as argv[1] and prints one line
per step: its name and its result, or the exception's class and SQLSTATE.
The Go test runs it against plain PostgreSQL and through shardproxy over
four shards and compares the lines. The Session runs every unit of work in
a transaction (BEGIN implicit in psycopg2); relationship loading uses joins
on the distribution key, IN lists (selectinload) and subqueries
(subqueryload); yield_per streams with a server-side cursor. Its ids are
5000 and up.
"""
import sys

from sqlalchemy import BigInteger, Column, ForeignKey, Text, create_engine, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, declarative_base, joinedload, relationship, selectinload, subqueryload

Base = declarative_base()


class User(Base):
    __tablename__ = "users"
    id = Column(BigInteger, primary_key=True)
    name = Column(Text, nullable=False)
    country = Column(Text)
    posts = relationship("Post", back_populates="author", order_by="Post.id")


class Post(Base):
    __tablename__ = "posts"
    author_id = Column(BigInteger, ForeignKey("users.id"), primary_key=True)
    id = Column(BigInteger, primary_key=True)
    body = Column(Text)
    author = relationship("User", back_populates="posts")


engine = create_engine(sys.argv[1].replace("postgres://", "postgresql+psycopg2://", 1), future=True)


def step(name, fn):
    try:
        value = fn()
    except DBAPIError as e:
        value = ("error", type(e.orig).__name__, getattr(e.orig, "pgcode", None))
    print(f"{name}: {value!r}", flush=True)


with Session(engine) as s:
    def add_all():
        s.add_all([User(id=i, name=f"sa{i}", country="DK" if i % 2 else "FI") for i in range(5000, 5008)])
        s.add_all([Post(author_id=5000 + i % 8, id=5000 + i, body=f"sa post {i}") for i in range(24)])
        s.commit()
        return s.scalar(select(func.count()).select_from(Post).where(Post.author_id >= 5000))
    step("add_all over shards", add_all)
    step("get", lambda: s.get(User, 5003).name)
    step("filter, order, limit, offset", lambda: [u.name for u in s.scalars(select(User).where(User.id >= 5000).order_by(User.name.desc()).limit(3).offset(1))])
    step("joinedload", lambda: [(u.name, len(u.posts)) for u in s.scalars(select(User).options(joinedload(User.posts)).where(User.id.in_([5001, 5002])).order_by(User.id)).unique()])
    step("selectinload", lambda: [(u.name, [p.body for p in u.posts]) for u in s.scalars(select(User).options(selectinload(User.posts)).where(User.id < 5003, User.id >= 5000).order_by(User.id))])
    step("subqueryload", lambda: [(u.name, len(u.posts)) for u in s.scalars(select(User).options(subqueryload(User.posts)).where(User.id >= 5005).order_by(User.id))])
    step("group by", lambda: s.execute(select(User.country, func.count()).where(User.id >= 5000).group_by(User.country).order_by(User.country)).all())
    step("join with aggregate", lambda: s.execute(select(User.name, func.count(Post.id)).join(Post, Post.author_id == User.id).where(User.id >= 5006).group_by(User.name).order_by(User.name)).all())

    def nested():
        u = s.get(User, 5004)
        sp = s.begin_nested()
        u.name = "nested"
        s.flush()
        sp.rollback()
        u2 = s.get(User, 5005)
        u2.name = "kept"
        s.commit()
        return s.get(User, 5004).name, s.get(User, 5005).name
    step("begin_nested rolled back", nested)

    def locked():
        u = s.scalars(select(User).where(User.id == 5006).with_for_update()).one()
        u.country = "NO"
        s.commit()
        return s.get(User, 5006).country
    step("with_for_update", locked)

    def stream():
        bodies = [b for b in s.scalars(select(Post.body).where(Post.author_id >= 5000).order_by(Post.id).execution_options(yield_per=5))]
        s.commit()
        return len(bodies), bodies[:2]
    step("yield_per stream", stream)

    def failing():
        try:
            s.add(User(id=5000, name="duplicate"))
            s.commit()
        except DBAPIError as e:
            s.rollback()
            return type(e.orig).__name__, s.get(User, 5000).name
    step("a failed flush rolls back", failing)
    step("bulk update", lambda: (s.execute(update(User).where(User.id >= 5000).values(country="IS").execution_options(synchronize_session=False)).rowcount, s.commit())[0])
    step("text", lambda: s.execute(text("SELECT count(*) FROM users WHERE id = ANY(:ids)"), {"ids": [5001, 5002, 1]}).scalar())

    def cleanup():
        n = s.execute(delete(Post).where(Post.author_id >= 5000).execution_options(synchronize_session=False)).rowcount
        m = s.execute(delete(User).where(User.id >= 5000).execution_options(synchronize_session=False)).rowcount
        s.commit()
        return n, m
    step("delete", cleanup)
