"""Table and column names: the one place they are spelled out.

Everything else (Python, SQL templates, tests) refers to these constants. SQL files in `sql/`
use the same names; `tests/test_contract.py` checks that the two agree.
"""

from __future__ import annotations

# --- columns shared by many tables -------------------------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
RATING = "rating"
RATED_AT = "rated_at"
RANK = "rank"
SCORE = "score"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
PUBLICATION_ID = "publication_id"
SPLIT_ID = "split_id"
DATA_HASH = "data_hash"

# --- source tables (ingest) ----------------------------------------------------------------
RATINGS = "ratings"
RATINGS_COLUMNS = (USER_ID, ITEM_ID, RATING, RATED_AT)
RATING_MIN, RATING_MAX = 1, 5      # the MovieLens star scale

MOVIES = "movies"
TITLE = "title"
RELEASE_DATE = "release_date"
VIDEO_RELEASE_DATE = "video_release_date"
IMDB_URL = "imdb_url"
GENRES_LIST = "genres"

USERS = "users"
AGE = "age"
GENDER = "gender"
OCCUPATION = "occupation"
ZIP_CODE = "zip_code"
USERS_COLUMNS = (USER_ID, AGE, GENDER, OCCUPATION, ZIP_CODE)

GENRES = "genres"
GENRE_ID = "genre_id"
GENRE_NAME = "name"
GENRE_COLUMN = "column_name"
GENRES_COLUMNS = (GENRE_ID, GENRE_NAME, GENRE_COLUMN)

OCCUPATIONS = "occupations"

# The 19 MovieLens 100k genres in u.item flag order; u.genre must list exactly these.
GENRE_NAMES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


def genre_column(name: str) -> str:
    """Boolean column for a genre: 'Children's' -> 'genre_childrens', 'Sci-Fi' -> 'genre_sci_fi'."""
    slug = "".join(c if c.isalnum() else "_" for c in name.lower().replace("'", ""))
    return "genre_" + "_".join(part for part in slug.split("_") if part)


GENRE_COLUMNS = tuple(genre_column(g) for g in GENRE_NAMES)
MOVIES_COLUMNS = (ITEM_ID, TITLE, RELEASE_DATE, VIDEO_RELEASE_DATE, IMDB_URL, GENRES_LIST) + GENRE_COLUMNS

SOURCE_TABLES = (RATINGS, MOVIES, USERS, GENRES)

# --- splits ----------------------------------------------------------------------------------
SPLITS = "splits"                  # one row per stored split: id, strategy, params, hash, counts
SPLIT_STRATEGY = "strategy"
SPLIT_PARAMS = "params"
SPLIT_RATINGS = "split_ratings"   # ratings of the current split with their part
PART = "part"
PART_TRAIN, PART_VALID, PART_TEST = "train", "valid", "test"
PARTS = (PART_TRAIN, PART_VALID, PART_TEST)

# --- published tables ------------------------------------------------------------------------
RECOMMENDATIONS = "recommendations"
SOURCE = "source"                  # how a published row was scored: SOURCES / SIMILARITY_SOURCES below
PREDICTED_RATING = "predicted_rating"  # the rating model's 1-5 prediction for the row's (user, item); null without one
RECOMMENDATIONS_COLUMNS = (USER_ID, RANK, ITEM_ID, SCORE, PREDICTED_RATING, SOURCE, MODEL_NAME, MODEL_VERSION,
                           PUBLICATION_ID)

SIMILAR_ITEMS = "similar_items"
SIMILAR_ITEM_ID = "similar_item_id"
SIMILARITY = "similarity"
SIMILAR_ITEMS_COLUMNS = (ITEM_ID, RANK, SIMILAR_ITEM_ID, SIMILARITY, SOURCE, MODEL_NAME, MODEL_VERSION,
                         PUBLICATION_ID)

PUBLICATIONS = "publications"
CREATED_AT = "created_at"
MODEL_URI = "model_uri"
SIMILARITY_MODEL_NAME = "similarity_model_name"
SIMILARITY_MODEL_VERSION = "similarity_model_version"
SIMILARITY_MODEL_URI = "similarity_model_uri"
METRICS_JSON = "metrics_json"
SNAPSHOT_PATH = "snapshot_path"
RECOMMENDATION_ROWS = "recommendation_rows"
SIMILAR_ITEM_ROWS = "similar_item_rows"
STALE = "stale"  # publications: scored on other data than the warehouse serves (rated items filtered out)

USER_RECOMMENDATIONS = "user_recommendations"  # view: recommendations + movie titles and genres
ITEM_NEIGHBORS = "item_neighbors"              # view: similar_items + both titles

# --- model names in the MLflow registry ------------------------------------------------------
MODEL_KIND_DOT = "dot_bias"
MODEL_KIND_NN = "embedding_nn"
MODEL_KINDS = (MODEL_KIND_DOT, MODEL_KIND_NN)
REGISTERED_MODEL_PREFIX = "lensflow-"
ALIAS_CANDIDATE = "candidate"
ALIAS_CHAMPION = "champion"


def registered_model_name(kind: str) -> str:
    """Registry name of a model kind: 'dot_bias' -> 'lensflow-dot_bias'."""
    return REGISTERED_MODEL_PREFIX + kind

# --- split tables: added by the split engineer (append-only) ---------------------------------------
TRAIN_ROWS, VALID_ROWS, TEST_ROWS = "train_rows", "valid_rows", "test_rows"  # splits: rows per part
IS_CURRENT = "is_current"          # splits: true for the split named by splits/CURRENT

# --- warehouse metadata (ingest) -------------------------------------------------------------
WAREHOUSE_BUILD = "warehouse_build"   # one row: which build of the DuckDB file this is
BUILD_ID = "build_id"
BUILT_AT = "built_at"
BUILD_SECTIONS = "sections"

# --- publish: title tables and publication files (added by publish) ---------------------------
SIMILAR_TITLE = "similar_title"    # item_neighbors: title of the similar movie
# recommendations.source: how the row was scored
SOURCE_MODEL = "model"            # the model, for a user it has learnt
SOURCE_SIDE_INFO = "side_info"    # a user without ratings, from age, gender and occupation (tasks/publishing/cold_start.py)
SOURCE_POPULARITY = "popularity"  # plain most-rated, for a user without usable side information
SOURCE_METADATA = "metadata"      # an item without ratings, from its metadata neighbours (tasks/publishing/cold_start.py)
SOURCES = (SOURCE_MODEL, SOURCE_SIDE_INFO, SOURCE_POPULARITY, SOURCE_METADATA)  # values of SOURCE
# similar_items.source: what earned the neighbour its place (tasks/publishing/item_similarity.py)
SIMILARITY_FROM_RATINGS = "ratings"    # co-rated by enough users (blended with the model's item vectors)
SIMILARITY_FROM_METADATA = "metadata"  # genres and release year only (items with too few co-raters)
SIMILARITY_SOURCES = (SIMILARITY_FROM_RATINGS, SIMILARITY_FROM_METADATA)

# --- publication health: one row per publication ever made and metric (tasks/publishing/publication_metrics.py) ---
PUBLICATION_METRICS = "publication_metrics"
METRIC = "metric"
VALUE = "value"
PUBLICATION_METRICS_COLUMNS = (PUBLICATION_ID, METRIC, VALUE)
HEALTH_JSON = "health_json"        # publications: the publication's own figures as JSON (same as above)

# --- serving fit: the evaluated config refitted on every rating (tasks/registry/serving.py) ---------------
ALIAS_SERVING = "serving"          # registry alias of a kind's serving fit (never champion or candidate)
EVALUATED_MODEL_VERSION = "evaluated_model_version"      # publications: version whose metrics justified it
SIMILARITY_EVALUATED_MODEL_VERSION = "similarity_evaluated_model_version"
SERVED_ALIAS = "served_alias"      # publications: 'serving' | 'champion' | 'candidate' (no champion existed)

# --- the rating model behind recommendations.predicted_rating (publications; null without a rating champion) ---
RATING_MODEL_NAME = "rating_model_name"
RATING_MODEL_VERSION = "rating_model_version"
RATING_MODEL_URI = "rating_model_uri"
RATING_EVALUATED_MODEL_VERSION = "rating_evaluated_model_version"
