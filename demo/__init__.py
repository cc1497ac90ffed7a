"""The demo behind `make demo` (python -m demo.run_demo); demo/dags is its Airflow DAG folder."""
