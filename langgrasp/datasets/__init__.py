"""Datasets: synthetic table-top scenes (the embedded default), OCID-VLG and Grasp-Anything++."""
