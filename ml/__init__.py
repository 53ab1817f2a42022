"""nerloop's machine-learning library: conversion, training, evaluation, uncertainty. No web, DB or queue."""
