-- Personal task-list filter presets (dashboard spec 3.6). `name_key` is the
-- name case-folded, so two views of one user in one project cannot share a
-- name in any case, even under concurrent writes.
CREATE TABLE saved_views (
    id                      blob PRIMARY KEY,
    user_id                 blob NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    page                    varchar(20) NOT NULL DEFAULT 'tasks',
    name                    varchar(80) NOT NULL,
    name_key                varchar(320) NOT NULL,
    filters                 text NOT NULL DEFAULT '{}',
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_saved_views_name UNIQUE (user_id, project_id, page, name_key)
);
