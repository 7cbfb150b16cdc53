-- One PostgreSQL server, three databases: MLflow's tracking/registry store, MLflow's basic-auth
-- users, and Prefect's orchestration state. Runs once, when the data volume is first created.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE prefect;
